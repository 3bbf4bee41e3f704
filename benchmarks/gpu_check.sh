#!/usr/bin/env bash
# One prepared run on a borrowed CUDA machine: the GPU path of the whole product, measured.
#   bash benchmarks/gpu_check.sh OUT_DIR      (wheels of optuna, SQLAlchemy, alembic, Mako,
#                                             colorlog and clean-fid in .whl/ if not installed)
# 1. the demo model's quality figures at 1,000 samples (benchmarks/demo_quality.py);
# 2. a real search through the CLI on the GPU: 5, 9 and 15 NFE, 20 trials each, rungs 256,1024;
# 3. proxy fidelity with the large-N ranking at 10,000 samples (benchmarks/proxy_fidelity.py);
# 4. the demo model's quality figures at 10,000 samples.
set -u
out=${1:?usage: gpu_check.sh OUT_DIR}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
log=$out/gpu_check.log
step() { echo "== $(date +%T) $*" | tee -a "$log"; }

step "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader)"
step "quality at 1,000 samples"
timeout 60 python3 benchmarks/demo_quality.py --samples 1000 --device cuda \
  --json "$out/quality_1k.json" >>"$log" 2>&1
step "search on the GPU"
db=$out/gpu_search.db
started=$(date +%s)
timeout 120 python3 -m skiptune.cli search --model skiptune/assets/demo_unet.pt --nfe 5 --nfe 9 \
  --nfe 15 --trials 20 --rungs 256,1024 --db "$db" --device cuda --quiet >>"$log" 2>&1
step "search took $(( $(date +%s) - started )) s"
python3 -m skiptune.cli best --db "$db" --json >"$out/best.json" 2>>"$log"
python3 -m skiptune.cli front --db "$db" >>"$log" 2>&1
step "proxy fidelity, large N 10,000"
timeout 120 python3 benchmarks/proxy_fidelity.py --rungs 64,128,256,512,1024 --large-n 10000 \
  --batch-size 1000 --device cuda --json "$out/proxy_fidelity_gpu.json" >>"$log" 2>&1
step "quality at 10,000 samples"
timeout 100 python3 benchmarks/demo_quality.py --samples 10000 --batch-size 1000 --device cuda \
  --json "$out/quality_10k.json" >>"$log" 2>&1
step "done"
