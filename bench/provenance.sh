# shellcheck shell=sh
# shellcheck disable=SC2154 # root is the sourcing script's checkout
# Sourced by the benchmark scripts: where a results file came from. The first script of a run
# records the commit, whether the tree was clean (changes under bench/results, the outputs, do not
# count), the command and the load average at its start, and exports them, so a script that
# bench/run.sh runs reports the suite's start, not a tree its siblings' results already changed.
#   ps_bench_begin COMMAND...   at the start (records once per run; needs $root, the checkout)
#   ps_bench_provenance         one markdown line: command, commit, tree, date, machine, load
ps_bench_begin() {
    if [ -z "${PS_BENCH_COMMIT:-}" ]; then
        PS_BENCH_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
        dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null |
            awk '$NF !~ /^bench\/results\// { print $NF }' | head -3 | tr '\n' ' ' || true)
        if [ "$PS_BENCH_COMMIT" = unknown ]; then
            PS_BENCH_TREE="not a git checkout"
        elif [ -n "$dirty" ]; then
            PS_BENCH_TREE="tree NOT clean: uncommitted changes in ${dirty% }"
        else
            PS_BENCH_TREE="clean tree"
        fi
        PS_BENCH_TOP="$*"
        export PS_BENCH_COMMIT PS_BENCH_TREE PS_BENCH_TOP
    fi
    PS_BENCH_CMD="$*"
    PS_BENCH_LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
}

ps_bench_provenance() {
    ps_bench_via=""
    [ "${PS_BENCH_TOP:-}" != "${PS_BENCH_CMD:-}" ] && ps_bench_via=" (run by \`$PS_BENCH_TOP\`)"
    echo "**Provenance:** \`$PS_BENCH_CMD\`$ps_bench_via at commit $PS_BENCH_COMMIT ($PS_BENCH_TREE)," \
        "finished $(date -u '+%Y-%m-%d %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo |
            cut -d: -f2 | sed 's/^ //'), $(nproc) cores shared with other work (load average" \
        "$PS_BENCH_LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
}
