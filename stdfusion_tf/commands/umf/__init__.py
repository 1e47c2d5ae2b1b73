r"""stdfusion-umf: UMF-CMGR (IJCAI 2022) registration and fusion, one
subcommand per upstream script (Test/, Trainer/, Evaluation/, data/).

    stdfusion-umf test_reg_fusion --ir_dir ir_warp --vi_dir vi \
        --target_dir pseudo_ir --checkpoint_reg umfcmgr_retrain_reg_0800 \
        --checkpoint_fuse umfcmgr_retrain_fus_0200 --output_dir out
    stdfusion-umf SUBCOMMAND --help

Weights flags take a .pth, a .weights.h5 or a preset name:
umfcmgr_retrain_reg_0800 (MRRN) and umfcmgr_retrain_fus_0200 (DIFN), the
public retrain HaodeShi/UMF-CMGR-retrain-and-test @ 43f9365, fetched on
first use (sha256-checked) into the Keras cache ($KERAS_HOME, else
~/.keras), from $STDFUSION_UMF_MIRROR when set (a folder holding
weights/reg_0800.pth and weights/fus_0200.pth).  From a clone: ``python -m
umf.<SUBCOMMAND>``, the same programs and flags.
"""

SUBCOMMANDS = {
    "test_reg": "register misaligned infrared images (MRRN)",
    "test_fuse": "fuse registered pairs (DIFN, or STDFusionNet)",
    "test_reg_fusion": "register, then fuse, in one run",
    "evaluate_reg": "registration metrics (MSE, NCC, LNCC, MI, EPE)",
    "make_misaligned": "deform aligned infrared images (seeded)",
    "make_svs_maps": "saliency weight maps for train_fuse",
    "train_reg": "train MRRN",
    "train_fuse": "train DIFN",
    "train_cpstn": "train CPSTN (CycleGAN pseudo-infrared generator)",
}


def run(argv=None):
    """Console script ``stdfusion-umf``."""
    from stdfusion_tf import commands

    commands.dispatch(__name__, SUBCOMMANDS, __doc__, argv)


if __name__ == "__main__":
    run()
