#!/usr/bin/env bash
# One command for a session that is lent a GPU (about 15 minutes of device time): the open measurements of
# issues 19, 20 and 22 under the converged protocol (400 epochs where the budget allows), one study per
# background job, results written under OUT (default $OUT, the device tool's return folder).
#   bash benchmarks/gpu_studies.sh                      # everything below, in parallel, ~10 min cap each
#   STUDIES="simir" SEEDS=0,1,2 bash benchmarks/gpu_studies.sh
# Data: ../shared/data (SIRST v1 idx_427, NUDT-SIRST 50_50). Checkpoints are selected on validation.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_out}"
SEEDS="${SEEDS:-0,1,2}"
CAP="${CAP:-540}"                       # seconds per study job (the device tool allows 600 per command)
STUDIES="${STUDIES:-simir host_zoo pointsup}"
mkdir -p "$OUT"
pip install -q -e ".[test]" >/dev/null 2>&1 || true
GPU=(--set trainer.accelerator=gpu --set trainer.precision=16-mixed --set data.num_workers=4)
run() {  # run NAME ARGS...: one study in the background, capped, its log and results under OUT
    local name=$1; shift
    timeout "$CAP" irfoundry study run "$@" "${GPU[@]}" --seeds "$SEEDS" --runs "$OUT/runs" \
        --out "$OUT/$name.json" >"$OUT/$name.log" 2>&1 &
}
for s in $STUDIES; do
    case $s in
        simir)    # issue 20: teacher first (its run feeds the distilled student), then student and hosts
            (timeout "$CAP" bash -c "irfoundry study run simir --hosts sam_teacher --arms teacher ${GPU[*]} \
                --seeds $SEEDS --runs $OUT/runs --out $OUT/simir.json && irfoundry study run simir \
                --hosts simir_small,acm,alcnet --arms host ${GPU[*]} --seeds $SEEDS --runs $OUT/runs \
                --out $OUT/simir.json && irfoundry study run simir --hosts simir_small --arms distilled \
                ${GPU[*]} --seeds $SEEDS --runs $OUT/runs --out $OUT/simir.json" >"$OUT/simir.log" 2>&1) & ;;
        host_zoo) run host_zoo host_zoo --set trainer.max_epochs=400 --set data.crop_size=256 ;;   # issue 22
        pointsup) run semprior pointsup --hosts acm,alcnet --arms pal_softiou,semprior,semprior_random \
                      --set trainer.max_epochs=400 --set data.crop_size=256 ;;                       # issue 19
        *) echo "unknown study $s" >&2; exit 2 ;;
    esac
done
wait
ls -l "$OUT"
