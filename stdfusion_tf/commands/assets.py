"""Fetch upstream files from their pinned commits, sha256-checked.

    stdfusion-assets --groups tno42,roadscene,peers_tno42
    stdfusion-assets --groups umf_weights --mirror ../shared/umf-cmgr

Every group of stdfusion_tf/assets.json (the released checkpoints, upstream's
test and training pairs, the evaluation data sets, UMF-CMGR's weights and
RoadScene set) goes where upstream's scripts expect it, under the current
folder.  Mirrors (local folders used instead of GitHub): --mirror, else
$STDFUSION_MIRROR (the STDFusionNet release, laid out like ../shared/upstream),
$STDFUSION_DATA_MIRROR (data sets, like ../shared) or $STDFUSION_UMF_MIRROR
(UMF-CMGR, like ../shared/umf-cmgr: weights/, RoadScene/).
"""

from absl import flags

from stdfusion_tf import assets

FLAGS = flags.FLAGS
flags.DEFINE_list("groups", None, "Asset groups: " + ", ".join(assets.groups()))
flags.DEFINE_string("mirror", None, "Local mirror folder (default: "
                    f"${assets.MIRROR_ENV}, ${assets.DATA_MIRROR_ENV} or "
                    f"${assets.UMF_MIRROR_ENV}, by group).")
flags.mark_flag_as_required("groups")


def main(argv):
    if len(argv) > 1:
        raise flags.UnrecognizedFlagError(argv[1])
    for group in FLAGS.groups:
        paths = assets.fetch(group, root=".", mirror=FLAGS.mirror)
        print(f"{group}: {len(paths)} file(s) in place, sha256 verified")


def run():
    """Console script ``stdfusion-assets``."""
    from stdfusion_tf import commands

    commands.run(__name__)


if __name__ == "__main__":
    run()
