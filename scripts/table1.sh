#!/usr/bin/env bash
# The paper's Table I workflow, end to end:
#   1. fetch TNO42, RoadScene and the other methods' TNO42 results (pinned
#      commits, sha256-checked; $STDFUSION_DATA_MIRROR for a local copy),
#   2. fuse both sets with the released jiayi-ma model-29 weights (RoadScene
#      with the colour strategy: Y channel fused, visible Cb/Cr kept),
#   3. evaluate.py: TNO42 with the nine peer methods, RoadScene alone.
# Reports: results/TNO42/report/, results/RoadScene/report/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
METRICS=${METRICS:-EN,MI,VIF,SF}

"$PY" -m stdfusion_tf.commands.assets --groups tno42,roadscene,peers_tno42
"$PY" test.py --ir_dir datasets/TNO42/ir --vi_dir datasets/TNO42/vi \
    --output_dir results/TNO42/STDFusionNet
"$PY" test.py --ir_dir datasets/RoadScene/ir --vi_dir datasets/RoadScene/vi \
    --color --output_dir results/RoadScene/STDFusionNet

peers=()
for method in DenseFuse FusionGAN IFCNN PMGI U2Fusion RFN-Nest SDNet PIAFusion SeAFusion; do
    peers+=(--fused "$method=datasets/peers/TNO42/$method")
done
# PMGI's folder has two extra images (43, 44) without a source pair: skipped.
"$PY" evaluate.py --ir_dir datasets/TNO42/ir --vi_dir datasets/TNO42/vi \
    --fused STDFusionNet=results/TNO42/STDFusionNet "${peers[@]}" \
    --metrics "$METRICS" --allow_missing --out_dir results/TNO42/report
"$PY" evaluate.py --ir_dir datasets/RoadScene/ir --vi_dir datasets/RoadScene/vi \
    --fused STDFusionNet=results/RoadScene/STDFusionNet \
    --metrics "$METRICS" --out_dir results/RoadScene/report
