#!/bin/bash
# ON THE GPU MACHINE, from the project root (see benchmarks/README.md for the preparation and the exact call).
# LF's three workloads then tuneforge's on the same model, data and settings; GPU-marked tests; RESULTS.md to $OUT.
# ~6-8 minutes. SEED_STEPS caps the seed workload (both sides) so LF's slow seed run stays short.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
SEED_STEPS=${SEED_STEPS:-24}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/device.txt"

# 1. tuneforge's extra wheels (.whl, carried): only what the machine lacks, in a private site folder.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tfsite .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/tfsite:$PWD/src
python3 -c "import tuneforge.train.sft, liger_kernel; print('tuneforge + liger import ok')" 2>&1 | tail -1 | tee -a "$OUT/device.txt"

# 2. LLaMA-Factory: model build (/tmp/q15b) + its three workloads, seed capped at SEED_STEPS steps.
cp .bench/lf/seed.yaml .bench/lf/seed${SEED_STEPS}.yaml && echo "max_steps: $SEED_STEPS" >> .bench/lf/seed${SEED_STEPS}.yaml
PYTHONPATH= CFGS="seed${SEED_STEPS} lora_pack full_pack" timeout 330 bash .bench/lf_run.sh 2>&1 | tee "$OUT/lf.txt"
[ -d /tmp/q15b ] || python3 -m tuneforge.cli make-tiny --shape qwen2-1.5b --out /tmp/q15b  # only if LF's build failed

# 3. tuneforge on the same workloads (tokens/s, s/step, peak memory, MFU), nvidia-smi sampled like LF's.
tf() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/tfmem_$1.txt & SMI=$!
  timeout 150 python3 benchmarks/train_speed.py --workload "$@" --model /tmp/q15b 2>&1 | tee -a "$OUT/tf_log.txt" | grep TFRESULT >> "$OUT/tf.jsonl"
  kill $SMI; echo "tuneforge $1 peak_gpu_MiB=$(sort -n /tmp/tfmem_$1.txt | tail -1)" | tee -a "$OUT/tf_smi.txt"
}
: > "$OUT/tf.jsonl"
tf seed --max-steps "$SEED_STEPS"
tf lora_pack
tf full_pack
tf lora_pack --set speed_kernels=torch   # chunked cross-entropy instead of Liger, to see what Liger buys
tf lora_pack --set disable_gradient_checkpointing=true   # no recomputation while memory allows
tail -3 "$OUT/tf_log.txt"

# 4. GPU-marked tests (varlen backends vs per-document SDPA in bf16, GPU export check).
timeout 90 python3 -m pytest -q -m gpu tests/test_speed_attention.py -p no:cacheprovider 2>&1 | tail -5 | tee "$OUT/gpu_tests.txt"
# DeepSpeed ZeRO-3 save (gathered model / adapter) and resume from a ZeRO checkpoint; skipped without deepspeed.
timeout 300 python3 -m pytest -q -m gpu tests/test_dist_gpu.py -p no:cacheprovider 2>&1 | tail -5 | tee -a "$OUT/gpu_tests.txt"
# FSDP2 over two GPUs equals one GPU (LoRA and full); skipped on a machine with one GPU.
timeout 200 python3 -m pytest -q -m gpu tests/test_dist_fsdp_gpu.py -p no:cacheprovider 2>&1 | tail -5 | tee -a "$OUT/gpu_tests.txt"
# QLoRA on CUDA (bitsandbytes, EETQ) and GPTQ export; each skips when its wheel (bitsandbytes, eetq, gptqmodel) is absent.
timeout 240 python3 -m pytest -q -m gpu tests/test_quantization_e2e.py tests/test_export_hf.py -p no:cacheprovider 2>&1 | tail -5 | tee -a "$OUT/gpu_tests.txt"

# 5. The table.
{ echo "# GPU results (draft; $(head -1 "$OUT/device.txt"))"; echo; python3 benchmarks/train_speed.py --report "$OUT/lf.txt" "$OUT/tf.jsonl"; echo; cat "$OUT/tf_smi.txt"; } > "$OUT/RESULTS.md"
cat "$OUT/RESULTS.md"
