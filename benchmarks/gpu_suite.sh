#!/usr/bin/env bash
# `ltbench bench` on a GPU: ViT-S at 32 and 224 px (eager and torch.compile), ResNet-32, and
# the streamed path from 224-px JPEG files. One JSON (and the printed table) per case in OUT.
#
#   bash benchmarks/gpu_suite.sh OUT [FASHION_MNIST_DIR] [CASE...]
#
# Data: Fashion-MNIST-LT (Debian's dataset-fashion-mnist, or the four idx .gz files in
# FASHION_MNIST_DIR), a real long-tailed set of about 15,000 training images that fits in
# GPU memory. Cases: vits32 vits224 resnet32 stream224 vits32_compile vits224_compile (default: all).
set -uo pipefail
out=$1; fm=${2:-/usr/share/datasets/fashion-mnist}; shift $(( $# < 2 ? $# : 2 ))
cases=${*:-vits32 vits224 resnet32 stream224 vits32_compile vits224_compile}
mkdir -p "$out"
ltb="${LTBENCH:-ltbench}"
vits=(--set embed_dim=384 --set depth=12 --set num_heads=6 --set mlp_ratio=4 --set batch_size=256)
at32=(--set img_size=32 --set patch_size=4)
at224=(--set img_size=224 --set patch_size=16)
common=(--data fashion_mnist_lt --root "$fm" --epochs 3 --reference-workers 8)

bench() {  # name, then bench arguments
    local name=$1; shift
    echo "== $name: $*"
    $ltb bench --json "$out/$name.json" "$@" 2>&1 | tee "$out/$name.txt" | grep -E "img_s|ratio|speedup|peak|first_step|gpu" \
        || echo "$name failed (see $out/$name.txt)"
}

for c in $cases; do
    case $c in
    vits32) bench vits32 --method ce "${common[@]}" "${vits[@]}" "${at32[@]}" ;;
    vits224) bench vits224 --method ce "${common[@]}" "${vits[@]}" "${at224[@]}" ;;
    vits32_compile) bench vits32_compile --method ce "${common[@]}" "${vits[@]}" "${at32[@]}" --set compile=true ;;
    vits224_compile) bench vits224_compile --method ce "${common[@]}" "${vits[@]}" "${at224[@]}" --set compile=true ;;
    resnet32) bench resnet32 --method cnn_ce --budget paper "${common[@]}" ;;
    stream224)
        [ -f /tmp/fm224/FASHION_MNIST_LT_train.txt ] ||
            python3 "$(dirname "$0")/jpeg_files.py" /tmp/fm224 --dataset fashion_mnist_lt --size 224 --data-root "$fm"
        $ltb --recipes "$(dirname "$0")/recipes" bench --method ce --data mnist_jpeg_lt --root /tmp/fm224 --epochs 3 \
            --set file_prefix=FASHION_MNIST_LT "${vits[@]}" "${at224[@]}" --set num_workers=12 \
            --json "$out/stream224.json" 2>&1 | tee "$out/stream224.txt" | grep -E "img_s|ratio|peak" ;;
    *) echo "unknown case $c" ;;
    esac
done
