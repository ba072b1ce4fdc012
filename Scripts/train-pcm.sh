#!/usr/bin/env bash
# Tunes the experts (with TUNE=1), trains the Preference Control Model and evaluates it; the trained files go to
# Configs/pcm/ and the figures to docs/results/.
#
#   [TUNE=1 TUNE_STEPS=80] [STEPS=80] [EXPLORE=0.25] Scripts/train-pcm.sh [MODEL] [OUT]
#
# TUNE=1 first runs mope tune (each expert's hidden offset, REBEL on its own dimension: ~12 s a step alone, 20
# minutes for 80 steps) from the system prompts of $EXPERTS, then trains and evaluates with the tuned experts and
# ships their bias files. Without TUNE the experts are those of $EXPERTS, biases included (the shipped ones).
#
# Sizes are chosen for a 2-core machine (STEPS × 4 items × 4 responses of at most 48 tokens, 48 sessions per
# forward pass, the experts seeing the preference's long prompt): the shipped PCM (80 steps, exploration 0.25)
# trained in 22.5 minutes, and the evaluation (40 Koala prompts × 8 combinations × 7 methods with tuned experts;
# each expert alone is run per combination when the experts see the preference, the "context" of $EXPERTS) took
# 15-18 minutes; both take longer when the machine is shared. Every method samples at temperature 0.7 (see
# docs/PCM.md for why).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${2:-.build/pcm-run}
STEPS=${STEPS:-80}
EXPLORE=${EXPLORE:-0.25}
BATCH=${BATCH:-4}
LIMIT=${LIMIT:-40}
TEMPERATURE=${TEMPERATURE:-0.7}
EXPERTS=${EXPERTS:-Configs/pcm/experts.json}
DATA=${DATA:-data}  # the directory holding the prompt files (see the data README)
export MOPE_VADER_LEXICON=${MOPE_VADER_LEXICON:-$(python3 -c \
    "import vaderSentiment,os;print(os.path.join(os.path.dirname(vaderSentiment.__file__),'vader_lexicon.txt'))")}

swift build -c release --product mope
MOPE=$(swift build -c release --show-bin-path)/mope
if [[ ${TUNE:-0} == 1 ]]; then
    TUNE_RESUME=()
    [[ -f "$OUT/tune/checkpoint.json" ]] && TUNE_RESUME=(--resume)
    "$MOPE" tune --model "$MODEL" --prompts "$DATA/train_prompts_self_instruct_seed.json" --experts "$EXPERTS" \
        --temperature "$TEMPERATURE" --steps "${TUNE_STEPS:-80}" --batch 2 --responses 4 --max-tokens 48 --seed 1 \
        --out "$OUT/tune" "${TUNE_RESUME[@]}"
    EXPERTS="$OUT/tune/experts.json"
fi
if [[ ${DIAGNOSE:-0} == 1 ]]; then
    # Is there anything to learn? Each expert alone, each combination's uniform and tilted mixtures, prompting.
    "$MOPE" eval --diagnose --model "$MODEL" --prompts "$DATA/train_prompts_self_instruct_seed.json" \
        --experts "$EXPERTS" --temperature "$TEMPERATURE" --limit 10 --samples 1 --max-tokens 48 --out "$OUT/diagnosis"
fi
RESUME=()
[[ -f "$OUT/train/checkpoint.json" ]] && RESUME=(--resume)
"$MOPE" train --model "$MODEL" --prompts "$DATA/train_prompts_self_instruct_seed.json" --experts "$EXPERTS" \
    --temperature "$TEMPERATURE" --steps "$STEPS" --batch "$BATCH" --responses 4 --max-tokens 48 --seed 1 \
    --projection 0 --hidden 16 --learning-rate 0.01 --eta 4 --explore "$EXPLORE" --out "$OUT/train" "${RESUME[@]}"
"$MOPE" eval --model "$MODEL" --prompts "$DATA/eval_prompts_koala_dev.json" --pcm "$OUT/train/pcm.json" \
    --experts "$EXPERTS" --temperature "$TEMPERATURE" --limit "$LIMIT" --max-tokens 48 --seed 1 --out "$OUT/eval"

mkdir -p Configs/pcm docs/results
if [[ ${TUNE:-0} == 1 ]]; then
    cp "$OUT"/tune/*.bias.json "$OUT/tune/experts.json" Configs/pcm/
    cp "$OUT/tune/tuning.csv" "$OUT/tune/tuning.png" docs/results/
fi
cp "$OUT/train/pcm.json" Configs/pcm/pcm.json
cp "$OUT/train/rewards.csv" "$OUT/train/rewards.png" docs/results/
cp "$OUT/eval/results.md" "$OUT/eval/results.csv" "$OUT/eval/results.png" "$OUT/eval/items.csv" docs/results/
