#!/usr/bin/env bash
# How detector/assets/people.mp4 was made: 12 s of the Intel IoT DevKit sample video (CC BY 4.0), H.264,
# moov atom first so that a partial download still plays. Needs ffmpeg and ../shared/data/videos.
set -euo pipefail
src=${1:-../shared/data/videos/one-by-one-person-detection.mp4}
out=${2:-detector/assets/people.mp4}
ffmpeg -v error -y -ss 104 -i "$src" -t 12 -c:v libx264 -preset slow -crf 28 -pix_fmt yuv420p \
  -movflags +faststart -an "$out"
echo "wrote $out"
