#!/usr/bin/env bash
# The 30-epoch STDFusionNet retrain, from its last checkpoint to the
# comparison the issue (#14) asks for:
#   1. stdfusion_tf/pretrained/retrained_30ep.weights.h5 (package data) from RUN's Fusion.model-$EPOCH
#      (convert.from_tf1 validates it against the TF1 graph);
#   2. its training curves (weights/retrained_30ep_curves.png) and log
#      summary (weights/retrained_30ep_log.txt, upstream's log.txt);
#   3. TNO42 (42 pairs) and upstream's 9 test pairs fused with the retrained
#      and the released (jiayi-ma model-29) weights; evaluate.py with all 12
#      metrics, TNO42 with the nine peer methods too;
#   4. the verdict (each TNO42 metric's retrained mean within one per-image
#      std of the release's?), the tables with it (weights/retrained_30ep_
#      tables.md) and a side-by-side picture released | retrained.
# RUN: the run folder (train.py's --checkpoint_dir ckpt, --summary_dir log);
# EPOCH: 29;
# OUT (weights/retrained_30ep) and RESULTS (results/retrain) to try it on an
# unfinished run elsewhere.  Reports: $RESULTS/{TNO42,test9}/report/.
# WEIGHTS: where the converted weights go (default $OUT.weights.h5, or the
# package's pretrained/retrained_30ep.weights.h5 without OUT); PRESET: the
# preset name printed at the end; NAME (retrained): the run's name in the
# tables; ALSO ("name=file.h5"): one more model fused and evaluated beside
# the two (the bf16 run's report adds the float32 retrain), COMPARE_LOG its
# log.txt for the curves picture; PEERS=0 leaves the nine peer methods out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${1:?usage: scripts/retrain_report.sh RUN_FOLDER (with ckpt/ and log/)}
EPOCH=${EPOCH:-29}
W=${OUT:-weights/retrained_30ep}
# the weights ship inside the package (the preset works when installed)
H5=${OUT:+$OUT.weights.h5}
H5=${WEIGHTS:-${H5:-stdfusion_tf/pretrained/retrained_30ep.weights.h5}}
R=${RESULTS:-results/retrain}
N=${NAME:-retrained}
ALSO=${ALSO:-}
if [ -d ../shared ]; then  # local copies of the pinned files
    export STDFUSION_MIRROR=${STDFUSION_MIRROR:-../shared/upstream}
    export STDFUSION_DATA_MIRROR=${STDFUSION_DATA_MIRROR:-../shared}
fi

mkdir -p "$(dirname $W)" "$(dirname $H5)"
"$PY" -m convert.from_tf1 \
    --src "$RUN/ckpt/STDFusion_32_Pixel_Grad/Fusion.model-$EPOCH" \
    --dst $H5
cp "$RUN/log/log.txt" ${W}_log.txt
compare=()  # the third model's log beside this run's curves, if it has one
[ -n "${COMPARE_LOG:-}" ] && compare=(--compare_log "$COMPARE_LOG" \
    --label "$N" --compare_label "${ALSO%%=*}")
"$PY" scripts/retrain_figures.py curves --log ${W}_log.txt \
    "${compare[@]}" --out ${W}_curves.png

"$PY" -m stdfusion_tf.commands.assets --groups tno42,peers_tno42
for set in TNO42:datasets/TNO42 test9:.; do
    name=${set%%:*} dir=${set#*:}
    ir=$dir/ir vi=$dir/vi
    [ $name = test9 ] && ir=Test_ir vi=Test_vi
    "$PY" test.py --checkpoint $H5 --ir_dir $ir --vi_dir $vi \
        --output_dir $R/$name/$N
    "$PY" test.py --ir_dir $ir --vi_dir $vi --output_dir $R/$name/released
    if [ -n "$ALSO" ]; then
        "$PY" test.py --checkpoint "${ALSO#*=}" --ir_dir $ir --vi_dir $vi \
            --output_dir $R/$name/${ALSO%%=*}
    fi
done

also=()
[ -n "$ALSO" ] && also=(--fused "${ALSO%%=*}=$R/TNO42/${ALSO%%=*}")
also9=()
[ -n "$ALSO" ] && also9=(--fused "${ALSO%%=*}=$R/test9/${ALSO%%=*}")
peers=()
if [ "${PEERS:-1}" != 0 ]; then
    for method in DenseFuse FusionGAN IFCNN PMGI U2Fusion RFN-Nest SDNet PIAFusion SeAFusion; do
        peers+=(--fused "$method=datasets/peers/TNO42/$method")
    done
fi
# PMGI's folder has two extra images (43, 44) without a source pair: skipped.
"$PY" evaluate.py --ir_dir datasets/TNO42/ir --vi_dir datasets/TNO42/vi \
    --fused released=$R/TNO42/released --fused $N=$R/TNO42/$N \
    "${also[@]}" "${peers[@]}" --metrics all --allow_missing \
    --out_dir $R/TNO42/report
"$PY" evaluate.py --ir_dir Test_ir --vi_dir Test_vi \
    --fused released=$R/test9/released --fused $N=$R/test9/$N \
    "${also9[@]}" --metrics all --out_dir $R/test9/report

"$PY" scripts/retrain_figures.py verdict \
    --metrics_csv $R/TNO42/report/metrics.csv --retrained $N \
    | tee $R/TNO42/verdict.txt
# The tables (the TNO42 one with the verdict) stay with the weights.
{ cat $R/TNO42/report/table.md; echo; echo '```'; cat $R/TNO42/verdict.txt
  echo '```'; echo; echo "Upstream's 9 test pairs:"; echo
  cat $R/test9/report/table.md; } > ${W}_tables.md
"$PY" scripts/retrain_figures.py side_by_side --left $R/test9/released \
    --right $R/test9/$N --names 01,05,09 --out ${W}_side_by_side.png
# The preset name (stdfusion_tf/presets.py, PROJECT_BUILTIN) pins this file.
echo "preset: \"${PRESET:-stdfusionnet_retrained_30ep}\": (\"$H5\"," \
     "\"$(sha256sum $H5 | cut -d' ' -f1)\")"
