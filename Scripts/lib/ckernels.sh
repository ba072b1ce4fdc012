#!/usr/bin/env bash
# Compiles the C kernels (Sources/CKernels) for a script that builds engine sources with swiftc directly:
# writes DIR/CKernels.o and a module map DIR/module.modulemap for `import CKernels`, and prints the swiftc
# arguments that use them (`-I DIR DIR/CKernels.o`).
#   Scripts/lib/ckernels.sh DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1
mkdir -p "$dir"
cp Sources/CKernels/include/CKernels.h "$dir/"
printf 'module CKernels {\n    header "CKernels.h"\n    export *\n}\n' > "$dir/module.modulemap"
defines=""
[ -n "${MOPE_PORTABLE:-}" ] && defines="-DMOPE_PORTABLE"
clang -O3 $defines -I Sources/CKernels/include -c Sources/CKernels/dot.c -o "$dir/CKernels.o" >&2
echo "-I $dir $dir/CKernels.o"
