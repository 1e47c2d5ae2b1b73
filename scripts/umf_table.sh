#!/usr/bin/env bash
# UMF-CMGR on RoadScene's 221 deformed pairs (issue #10, acceptance 6 and 3):
#   1. register the deformed infrared images (ir_warp) to the pseudo-infrared
#      ones with MRRN (reg_0800.pth), lossless and as upstream saves (JPEG 95);
#   2. fuse (a) without registration (ir_warp), (b) MRRN-registered, (c) the
#      aligned ground truth (ir_256), each with the visible vi_256, with DIFN
#      (fus_0200.pth) and with this project's STDFusionNet (released model-29);
#   3. evaluate.py against the aligned sources (ir_256, vi_256), and
#      umf.evaluate_reg for the registration table.
# $UMF_DATA: a folder laid out like ../shared/umf-cmgr (default).
# Reports: results/umf/report_difn/, report_stdfusionnet/, report_reg*/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
S=${UMF_DATA:-../shared/umf-cmgr}
R=results/umf
METRICS=${METRICS:-EN,MI,VIF,SF,Qabf}
D=$S/RoadScene

"$PY" -m umf.test_reg --ir_dir "$D/ir_warp" --target_dir "$D/pseudo_ir" \
    --checkpoint "$S/weights/reg_0800.pth" --output_dir $R/reg
"$PY" -m umf.test_reg --ir_dir "$D/ir_warp" --target_dir "$D/pseudo_ir" \
    --checkpoint "$S/weights/reg_0800.pth" --output_dir $R/reg_jpg \
    --save_format jpg
for fuser in difn stdfusionnet; do
    ckpt=()
    [ $fuser = difn ] && ckpt=(--checkpoint "$S/weights/fus_0200.pth")
    [ $fuser = stdfusionnet ] && ckpt=(--mirror "${STDFUSION_MIRROR:-../shared/upstream}")
    for case in noreg:$D/ir_warp reg:$R/reg aligned:$D/ir_256; do
        "$PY" -m umf.test_fuse --fuser $fuser "${ckpt[@]}" \
            --ir_dir "${case#*:}" --vi_dir "$D/vi_256" \
            --output_dir $R/$fuser/${case%%:*}
    done
    "$PY" evaluate.py --ir_dir "$D/ir_256" --vi_dir "$D/vi_256" \
        --fused "(a) no registration=$R/$fuser/noreg" \
        --fused "(b) MRRN-registered=$R/$fuser/reg" \
        --fused "(c) aligned=$R/$fuser/aligned" \
        --metrics "$METRICS" --out_dir $R/report_$fuser
done
"$PY" -m umf.evaluate_reg --warped_dir "$D/ir_warp" --registered_dir $R/reg_jpg \
    --gt_dir "$D/ir_256" --out_dir $R/report_reg_jpg
"$PY" -m umf.evaluate_reg --warped_dir "$D/ir_warp" --registered_dir $R/reg \
    --gt_dir "$D/ir_256" --out_dir $R/report_reg
