"""Plain-text progress off a terminal (log files, pipes)."""

from stdfusion_tf import progress


def test_plain_progress_when_not_a_terminal(capsys):
    assert not progress.is_terminal()  # pytest captures stdout
    bar = progress.progbar(3, unit_name="pair", stateful_metrics=["seconds"])
    assert isinstance(bar, progress.PlainProgbar)
    bar.interval = 0
    for i in range(3):
        bar.update(i + 1, values=[("seconds", 0.5 * (i + 1)),
                                  ("loss", float(i))])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\b" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("3/3 - ")
    assert "seconds: 1.5" in lines[-1] and "loss: 1" in lines[-1]
    quiet = progress.PlainProgbar(10, verbose=0)
    quiet.update(10)
    assert capsys.readouterr().out == ""
