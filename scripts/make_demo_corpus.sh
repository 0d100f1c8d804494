#!/usr/bin/env bash
# Regenerate the small synthetic speech demo corpus in demo_data/.
#
# Every clip is synthesized by espeak-ng from sentences written for this
# project, so the corpus contains no third-party recordings.  Output layout
# follows LJ Speech:
#
#   demo_data/wavs/demo_XXX.flac   22050 Hz, mono, 16-bit FLAC
#   demo_data/metadata.csv         demo_XXX|text|normalized text
#   demo_data/README.md            description, voices, rates, duration
#
# The output is deterministic: rerunning produces identical files, apart from
# differences between espeak-ng / sox versions.
#
# Requirements: espeak-ng, sox (with FLAC support), soxi, awk.
set -euo pipefail

export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in espeak-ng sox soxi awk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 1; }
done

OUT_DIR=demo_data
WAV_DIR=$OUT_DIR/wavs
SAMPLE_RATE=22050

# espeak-ng voice (+variant) and speaking rate (words per minute).  Clip i uses
# VOICES[i % 6] and RATES[i % 4], so voices and rates are combined in varied ways.
VOICES=(en-us en en-us+f3 en+m3 en-us+f2 en+m7)
RATES=(150 160 170 175)

# 32 sentences, 6 to 16 words each, written for this project.  They contain no
# digits or abbreviations, so the normalized text equals the raw text.  They
# must not contain the '|' character.
SENTENCES=(
    "The river flows slowly past the old stone mill at the edge of town."
    "Bees carry pollen from one flower to the next."
    "Water boils at a lower temperature on the top of a high mountain."
    "The library opens early on weekdays and closes at sunset."
    "A gentle rain fell over the fields all through the night."
    "The moon takes about four weeks to travel once around the Earth."
    "Copper is a good conductor of heat and electricity."
    "The children planted a row of young apple trees along the fence."
    "Most birds build their nests in the spring."
    "The train left the station exactly on time this morning."
    "Sound travels faster through water than it does through air."
    "The baker rises before dawn to prepare fresh bread for the market."
    "Maps help travelers find their way across unfamiliar country."
    "The ocean covers most of the surface of our planet."
    "A good lamp makes reading much easier in the evening."
    "Snow had already covered the hills by the middle of November."
    "The museum keeps a large collection of ancient coins and pottery."
    "Plants use sunlight to turn water and air into food."
    "The old bridge was rebuilt with stronger steel beams last summer."
    "Wool keeps sheep warm during the long cold winter months."
    "The lighthouse guided ships safely past the rocky coast."
    "Many farmers rotate their crops to keep the soil healthy."
    "The clock in the tower strikes every hour of the day."
    "Salt was once so valuable that it was traded like money."
    "The postman delivers letters to every house on the street."
    "Ice floats because it is less dense than liquid water."
    "The choir practiced their songs in the hall on Thursday evening."
    "Wind turns the great sails of the windmill on the hill."
    "A compass needle always points toward the magnetic north."
    "The garden was full of roses, tulips, and tall sunflowers."
    "Thunder is the sound made by a sudden flash of lightning."
    "The students listened carefully while the teacher read the story aloud."
)

TMP_DIR=$(mktemp -d)
trap 'rm -rf "$TMP_DIR"' EXIT

# Start from a clean output (only the files this script generates).
rm -rf "$WAV_DIR"
rm -f "$OUT_DIR/metadata.csv" "$OUT_DIR/README.md"
mkdir -p "$WAV_DIR"

: > "$OUT_DIR/metadata.csv"
for i in "${!SENTENCES[@]}"; do
    text=${SENTENCES[$i]}
    case $text in *'|'*) echo "error: sentence $i contains '|'" >&2; exit 1 ;; esac
    id=$(printf 'demo_%03d' "$i")
    voice=${VOICES[$((i % ${#VOICES[@]}))]}
    rate=${RATES[$((i % ${#RATES[@]}))]}

    # espeak-ng writes 22050 Hz mono 16-bit PCM wav.
    espeak-ng -v "$voice" -s "$rate" -w "$TMP_DIR/$id.wav" -- "$text"
    # -D: no dither, -R: repeatable; FLAC level 8 for the smallest files.
    sox -D -R "$TMP_DIR/$id.wav" -r "$SAMPLE_RATE" -c 1 -b 16 -C 8 "$WAV_DIR/$id.flac"

    printf '%s|%s|%s\n' "$id" "$text" "$text" >> "$OUT_DIR/metadata.csv"
    printf '%s  voice=%-9s rate=%s  %6.2f s\n' "$id" "$voice" "$rate" \
        "$(soxi -D "$WAV_DIR/$id.flac")"
done

n_clips=${#SENTENCES[@]}
total_sec=$(for f in "$WAV_DIR"/demo_*.flac; do soxi -D "$f"; done \
    | awk '{ s += $1 } END { printf "%.1f", s }')
min_sec=$(for f in "$WAV_DIR"/demo_*.flac; do soxi -D "$f"; done \
    | sort -g | head -n 1 | awk '{ printf "%.2f", $1 }')
max_sec=$(for f in "$WAV_DIR"/demo_*.flac; do soxi -D "$f"; done \
    | sort -g | tail -n 1 | awk '{ printf "%.2f", $1 }')
voices_md=$(printf '`%s`, ' "${VOICES[@]}"); voices_md=${voices_md%, }
rates_md=$(printf '%s, ' "${RATES[@]}"); rates_md=${rates_md%, }

cat > "$OUT_DIR/README.md" <<EOF
# Demo speech corpus

A tiny synthetic English speech corpus for smoke tests and demos of tf-melgan
(data loading, feature extraction, short training runs).  It is far too small
and too robotic to train a useful vocoder.

**Generated file, do not edit by hand.**  Recreate it with:

    scripts/make_demo_corpus.sh

## Contents

- \`wavs/demo_000.flac\` ... \`wavs/demo_$(printf '%03d' $((n_clips - 1))).flac\`: ${n_clips} clips,
  FLAC, ${SAMPLE_RATE} Hz, mono, 16-bit.
- \`metadata.csv\`: LJ Speech layout, one line per clip:
  \`ID|text|normalized text\` (ID without extension; both text columns are
  identical because the sentences contain no numbers or abbreviations).
- Total duration: ${total_sec} s (clips between ${min_sec} s and ${max_sec} s).

## How it was made

The speech is synthesized by [espeak-ng](https://github.com/espeak-ng/espeak-ng)
(formant synthesis, as packaged by Debian) from ${n_clips} short sentences written
for this project.

- Voices (espeak-ng voice+variant): ${voices_md}; clip *i* uses
  voice number *i* mod ${#VOICES[@]}.
- Speaking rates (\`-s\`, words per minute): ${rates_md}; clip *i* uses
  rate number *i* mod ${#RATES[@]}.
- espeak-ng writes ${SAMPLE_RATE} Hz mono 16-bit WAV, which sox converts
  losslessly to FLAC (no resampling, no dither, no trimming).

The script is deterministic; rerunning it reproduces the same files unless the
espeak-ng or sox version differs.

## License

Generated entirely by the tf-melgan project with espeak-ng from project-written
text; it contains no third-party recordings or third-party text, so it falls
under the same terms as the rest of the project.
EOF

echo "clips: ${n_clips}"
echo "total duration: ${total_sec} s (min ${min_sec} s, max ${max_sec} s)"
du -sh "$OUT_DIR"
