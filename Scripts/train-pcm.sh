#!/usr/bin/env bash
# Trains the Preference Control Model and evaluates it; the trained file goes to Configs/pcm/pcm.json and the
# figures to docs/results/.
#
#   Scripts/train-pcm.sh [MODEL] [OUT]
#
# Sizes are chosen to finish on a 2-core machine: training ~20 minutes (48 steps × 4 items × 2 responses of at
# most 48 tokens), evaluation ~10 minutes (8 Koala prompts × 8 combinations × 6 methods).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${2:-.build/pcm-run}
STEPS=${STEPS:-48}
BATCH=${BATCH:-4}
LIMIT=${LIMIT:-8}
DATA=${DATA:-data}  # the directory holding the prompt files (see the data README)
export MOPE_VADER_LEXICON=${MOPE_VADER_LEXICON:-$(python3 -c \
    "import vaderSentiment,os;print(os.path.join(os.path.dirname(vaderSentiment.__file__),'vader_lexicon.txt'))")}

swift build -c release --product mope
MOPE=$(swift build -c release --show-bin-path)/mope
RESUME=()
[[ -f "$OUT/train/checkpoint.json" ]] && RESUME=(--resume)
"$MOPE" train --model "$MODEL" --prompts "$DATA/train_prompts_self_instruct_seed.json" \
    --steps "$STEPS" --batch "$BATCH" --max-tokens 48 --seed 1 --out "$OUT/train" "${RESUME[@]}"
"$MOPE" eval --model "$MODEL" --prompts "$DATA/eval_prompts_koala_dev.json" --pcm "$OUT/train/pcm.json" \
    --limit "$LIMIT" --max-tokens 48 --seed 1 --out "$OUT/eval"

mkdir -p Configs/pcm docs/results
cp "$OUT/train/pcm.json" Configs/pcm/pcm.json
cp "$OUT/train/rewards.csv" "$OUT/train/rewards.png" docs/results/
cp "$OUT/eval/results.md" "$OUT/eval/results.csv" "$OUT/eval/results.png" docs/results/
