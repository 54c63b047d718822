# bench/perf-fold.awk - used by bench/run --perf: fold `perf script -F pid,ip,sym`
# samples into "leaf symbol | system call | first named user-space frames"
# and print each distinct chain's share of the samples.
function flush_sample() {
    if (nf == 0) return
    key = leaf " | " (sc == "" ? "-" : sc) " | " (uf == "" ? "-" : uf)
    cnt[key]++; total++
    nf = 0; leaf = ""; sc = ""; uf = ""; nu = 0
}
/^[0-9]+ *$/ { flush_sample(); next }
/^[ \t]*$/ { flush_sample(); next }
{
    addr = $1; sym = $2; for (i = 3; i <= NF; i++) sym = sym " " $i
    nf++
    if (nf == 1) leaf = sym
    if (addr ~ /^ffffffff/) {
        if (sc == "" && sym ~ /^__x64_sys_/) { sc = sym; sub(/^__x64_sys_/, "", sc) }
    } else if (sym != "[unknown]" && nu < 4) {
        uf = (uf == "" ? sym : uf " < " sym); nu++
    }
}
END {
    flush_sample()
    for (k in cnt) printf "%6.2f%%  %s\n", 100 * cnt[k] / total, k
}
