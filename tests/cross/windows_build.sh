#!/usr/bin/env bash
# Cross-compiles windows_options.cpp with mingw-w64 and, when Wine is present, runs it.
# Exit 77 (ctest SKIP) when the cross compiler is missing, except under CI=true where that is a failure.
set -euo pipefail
source_dir=$1 project_include=$2 out_dir=$3
compiler=x86_64-w64-mingw32-g++-posix
if ! command -v "$compiler" >/dev/null; then
  echo "SKIPPED: $compiler not installed (Debian package g++-mingw-w64-x86-64-posix)"
  [ "${CI:-}" = true ] && { echo "CI=true: a skipped test is a failure"; exit 1; }
  exit 77
fi
mkdir -p "$out_dir/deps"
# Only Asio's and fmt's headers are wanted from the host include tree, not glibc's.
ln -sfn /usr/include/fmt "$out_dir/deps/fmt"
ln -sfn /usr/include/asio "$out_dir/deps/asio"
ln -sfn /usr/include/asio.hpp "$out_dir/deps/asio.hpp"
"$compiler" -std=c++20 -Wall -Wextra -Wpedantic -Werror -DFMT_HEADER_ONLY -D_WIN32_WINNT=0x0A00 -I"$project_include" -I"$out_dir/deps" \
  "$source_dir/windows_options.cpp" -o "$out_dir/windows_options.exe" -static -lws2_32 -lmswsock
echo "cross-compiled $out_dir/windows_options.exe"
wine=$(command -v wine64 || command -v wine || ls /usr/lib/wine/wine64 2>/dev/null || true)
if [ -z "$wine" ]; then
  echo "SKIPPED running under Wine: not installed (Debian package wine64); compiled only"
  [ "${CI:-}" = true ] && { echo "CI=true: a skipped test is a failure"; exit 1; }
  exit 77
fi
# A prefix of our own, so the run neither needs nor touches the user's ~/.wine.
WINEPREFIX="$out_dir/wineprefix" WINEDEBUG=-all "$wine" "$out_dir/windows_options.exe"
