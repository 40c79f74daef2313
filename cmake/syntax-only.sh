#!/bin/sh
# Compiler (and linker) launcher that checks code without building it. A compile step (-c) runs with
# -fsyntax-only (parsing, semantic analysis and template instantiation, but no code generation); a
# link step links nothing. Either way an empty output file is left so the build tool sees the step
# done. Used for the examples and benchmarks in the CI build (MINIGPT_UNITY_BUILD: CI only checks
# that they compile) and for every target with MINIGPT_SYNTAX_ONLY (scripts/test-sanitizers clang).
out=
prev=
compile=0
for arg in "$@"; do
  [ "$prev" = "-o" ] && out="$arg"
  [ "$arg" = "-c" ] && compile=1
  prev="$arg"
done
if [ "$compile" = 1 ]; then
  "$@" -fsyntax-only || exit $?
fi
: > "$out"
