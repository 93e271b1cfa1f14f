#!/usr/bin/env bash
# Packaging test: install the build tree into a temporary prefix, check what was installed, build
# tests/package out of tree with find_package(pscope) (shared and static) and with pkg-config, and
# run each program against the installed psd (started and stopped by ps_psd_run, which requires a
# clean stop).
#   run.sh BUILD_DIR SOURCE_DIR PS_PSD_RUN [SANITIZE]
set -euo pipefail
build=$1
src=$2
runner=$3
san=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"

echo "== installed files"
libdir=$prefix/lib
[ -d "$prefix/lib64" ] && libdir=$prefix/lib64
[ -d "$libdir" ] || libdir=$(dirname "$(find "$prefix" -name 'libpsclient.so' | head -1)")
for f in include/ps/client.h include/ps/scope.h include/ps/variable.h include/ps/status.h \
         include/ps/dtype.h include/ps/ops.h bin/psd; do
  [ -e "$prefix/$f" ] || { echo "missing $f"; exit 1; }
done
for f in libpsclient.so libpsclient.a libpsops.so libpsops.a pkgconfig/psclient.pc pkgconfig/psops.pc \
         cmake/pscope/pscopeConfig.cmake \
         cmake/pscope/pscopeConfigVersion.cmake cmake/pscope/pscopeTargets.cmake; do
  [ -e "$libdir/$f" ] || { echo "missing lib/$f"; exit 1; }
done
# A pure client needs no OpenBLAS: only libpsops links it.
if readelf -d "$libdir/libpsclient.so" | grep NEEDED | grep -qi blas; then
  echo "libpsclient.so links OpenBLAS"
  exit 1
fi
if pkg-config --print-requires-private --static "$libdir/pkgconfig/psclient.pc" | grep -qi blas; then
  echo "psclient.pc requires OpenBLAS"
  exit 1
fi
readelf -d "$libdir/libpsops.so" | grep NEEDED | grep -qi blas || { echo "libpsops.so lacks OpenBLAS"; exit 1; }
# libpsclient's SONAME carries its ABI version (PS_CLIENT_SOVERSION in CMakeLists.txt), and the
# installed names and libpsops follow it.
top=$src/../../CMakeLists.txt # the project's, SOURCE_DIR being tests/package
soversion=$(sed -n 's/^set(PS_CLIENT_SOVERSION \([0-9][0-9]*\))$/\1/p' "$top")
[ -n "$soversion" ] || { echo "no PS_CLIENT_SOVERSION in $top"; exit 1; }
soname=$(readelf -d "$libdir/libpsclient.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libpsclient.so.$soversion" ] || { echo "libpsclient's SONAME is '$soname', not libpsclient.so.$soversion"; exit 1; }
[ -e "$libdir/libpsclient.so.$soversion" ] || { echo "missing lib/libpsclient.so.$soversion"; exit 1; }
readelf -d "$libdir/libpsops.so" | grep NEEDED | grep -q "\[libpsclient.so.$soversion\]" \
  || { echo "libpsops.so does not need libpsclient.so.$soversion"; exit 1; }
echo "ok: libpsclient SONAME $soname"
if [ -e "$prefix/include/ps/internal" ]; then
  echo "internal headers were installed"
  exit 1
fi
if grep -rlE 'pb-c\.h|Pscope__V1__|ProtobufC' "$prefix/include"; then
  echo "an installed header mentions protobuf-c"
  exit 1
fi

flags=
if [ -n "$san" ]; then
  flags="-fsanitize=$san -fno-omit-frame-pointer"
fi

echo "== consumer via find_package(pscope)"
cmake -S "$src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$tmp/consumer.log" 2>&1 || { cat "$tmp/consumer.log"; exit 1; }
cmake --build "$tmp/consumer" -j2 >>"$tmp/consumer.log" 2>&1 || { cat "$tmp/consumer.log"; exit 1; }

echo "== consumer via pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046
cc -std=c11 $flags -o "$tmp/consumer_pc" "$src/consumer.c" $(pkg-config --cflags --libs psclient)
# shellcheck disable=SC2046
cc -std=c11 $flags -o "$tmp/consumer_ops_pc" "$src/consumer_ops.c" $(pkg-config --cflags --libs psops)

echo "== ops consumers (no psd needed)"
want_ops="relu: [0.0, 2.0] (libpsclient 0.1.0)"
for prog in "$tmp/consumer/consumer_ops_shared" "$tmp/consumer/consumer_ops_static" "$tmp/consumer_ops_pc"; do
  out=$(LD_LIBRARY_PATH=$libdir timeout 60 "$prog")
  if [ "$out" != "$want_ops" ]; then
    echo "$(basename "$prog") printed: $out"
    echo "expected:          $want_ops"
    exit 1
  fi
  echo "ok: $(basename "$prog"): $out"
done

echo "== run against the installed psd"
# Each program against a fresh installed psd through ps_psd_run, which then stops psd with SIGTERM
# and fails unless psd exits 0 with a log free of sanitizer reports.
want="<ps.Variable 'pkg/w:0' shape=(2,) dtype=float32_ref> = [3.0, 3.0] (libpsclient 0.1.0)"
for prog in "$tmp/consumer/consumer_shared" "$tmp/consumer/consumer_static" "$tmp/consumer_pc"; do
  rc=0
  out=$(LD_LIBRARY_PATH=$libdir "$runner" --timeout 60 "$prefix/bin/psd" -- "$prog" @ADDR@) || rc=$?
  if [ "$out" != "$want" ]; then
    echo "$(basename "$prog") printed: $out"
    echo "expected:          $want"
    exit 1
  fi
  if [ "$rc" != 0 ]; then
    echo "$(basename "$prog") against the installed psd: exit status $rc (3: psd did not stop clean)"
    exit 1
  fi
  echo "ok: $(basename "$prog"): $out; psd stopped clean"
done

echo "== the installed Python package against the installed psd"
init=$(find "$prefix" -path '*/pscope/__init__.py' | head -1)
[ -n "$init" ] || { echo "cmake --install did not install the pscope Python package"; exit 1; }
site=$(dirname "$(dirname "$init")")
preload=
case "$san" in *address*) preload=$(cc -print-file-name=libasan.so) ;; esac
want_py="$libdir/libpsclient.so.$soversion <ps.Variable 'pkg/w:0' shape=(2,) dtype=float32_ref> [3.0, 3.0]"
rc=0
out=$(cd "$tmp" && "$runner" --timeout 60 "$prefix/bin/psd" -- env -u PSCOPE_LIBPSCLIENT -u PS_SERVER \
  PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 \
  "${PS_PYTHON3:-/usr/bin/python3}" -c '
import sys, pscope
pscope.connect(sys.argv[1])
import pscope.compat.v1 as tf
with tf.variable_scope("pkg"):
    w = tf.get_variable("w", [2], initializer=tf.constant_initializer(3.0))
print(pscope.LIBRARY_PATH, w, w.numpy().tolist())' @ADDR@) || rc=$?
if [ "$out" != "$want_py" ]; then
  echo "python printed: $out"
  echo "expected:       $want_py"
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "python against the installed psd: exit status $rc (3: psd did not stop clean)"
  exit 1
fi
echo "ok: python: $out; psd stopped clean"
