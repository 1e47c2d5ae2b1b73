#!/usr/bin/env bash
# UMF-CMGR on RoadScene's 221 deformed pairs:
#   1. register the deformed infrared images (ir_warp) to the pseudo-infrared
#      ones with MRRN (reg_0800.pth), lossless and as upstream saves (JPEG 95);
#      and straight onto the visible images with this project's weight-free
#      registration, default method (stdfusion-register; no pseudo-infrared
#      image needed);
#   2. fuse (a) without registration (ir_warp), (b) MRRN-registered,
#      (b') registered with the default method, (c) the aligned ground truth
#      (ir_256), each with the visible vi_256, with DIFN (fus_0200.pth) and
#      with this project's STDFusionNet (released model-29);
#   3. evaluate.py against the aligned sources (ir_256, vi_256), the gap
#      closure of (b) and (b') -- (x - a) / (c - a) of each metric's mean --
#      and umf.evaluate_reg for the registration table.
# $UMF_DATA: a folder laid out like ../shared/umf-cmgr (default).
# REUSE=1: keep a fusion folder that already holds every pair (re-runs).
# Reports: results/umf/report_difn/, report_stdfusionnet/ (table.md,
# closure.md), report_reg*/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
S=${UMF_DATA:-../shared/umf-cmgr}
R=results/umf
METRICS=${METRICS:-EN,MI,VIF,SF,Qabf}
D=$S/RoadScene
N=$(ls "$D/ir_warp" | wc -l)

done_already() {  # folder holds N images and REUSE=1
    [ "${REUSE:-0}" = 1 ] && [ -d "$1" ] && \
        [ "$(ls "$1" | grep -c '\.png$')" -ge "$N" ]
}

"$PY" -m umf.test_reg --ir_dir "$D/ir_warp" --target_dir "$D/pseudo_ir" \
    --checkpoint "$S/weights/reg_0800.pth" --output_dir $R/reg
"$PY" -m umf.test_reg --ir_dir "$D/ir_warp" --target_dir "$D/pseudo_ir" \
    --checkpoint "$S/weights/reg_0800.pth" --output_dir $R/reg_jpg \
    --save_format jpg
done_already $R/reg_auto || \
    "$PY" -m stdfusion_tf.commands.register --ir_dir "$D/ir_warp" \
        --vi_dir "$D/vi_256" --output_dir $R/reg_auto
for fuser in difn stdfusionnet; do
    ckpt=()
    [ $fuser = difn ] && ckpt=(--checkpoint "$S/weights/fus_0200.pth")
    [ $fuser = stdfusionnet ] && ckpt=(--mirror "${STDFUSION_MIRROR:-../shared/upstream}")
    for case in noreg:$D/ir_warp reg:$R/reg auto:$R/reg_auto \
                aligned:$D/ir_256; do
        out=$R/$fuser/${case%%:*}
        done_already "$out" && continue
        "$PY" -m umf.test_fuse --fuser $fuser "${ckpt[@]}" \
            --ir_dir "${case#*:}" --vi_dir "$D/vi_256" --output_dir "$out"
    done
    "$PY" evaluate.py --ir_dir "$D/ir_256" --vi_dir "$D/vi_256" \
        --fused "(a) no registration=$R/$fuser/noreg" \
        --fused "(b) MRRN-registered=$R/$fuser/reg" \
        --fused "(b') registered with the default method=$R/$fuser/auto" \
        --fused "(c) aligned=$R/$fuser/aligned" \
        --metrics "$METRICS" --out_dir $R/report_$fuser
    "$PY" scripts/umf_closure.py $R/report_$fuser
done
"$PY" -m umf.evaluate_reg --warped_dir "$D/ir_warp" --registered_dir $R/reg_jpg \
    --gt_dir "$D/ir_256" --out_dir $R/report_reg_jpg
"$PY" -m umf.evaluate_reg --warped_dir "$D/ir_warp" --registered_dir $R/reg \
    --gt_dir "$D/ir_256" --out_dir $R/report_reg
"$PY" -m umf.evaluate_reg --warped_dir "$D/ir_warp" --registered_dir $R/reg_auto \
    --gt_dir "$D/ir_256" --out_dir $R/report_reg_auto
