# Shared by bench/run.sh and bench/ta/run.sh (sourced, not run).

# Ends every process recorded in $1 (lines "PID START-TIME", written by bench/driver.py),
# and only while it is still the same process (same start time): SIGTERM, then SIGKILL.
# Then removes the namespaces $PREFIX-a and $PREFIX-b, killing whatever is left in them.
stop_recorded_and_namespaces() {
    local pidfile=$1 pid st sig
    for sig in TERM KILL; do
        while read -r pid st; do
            [[ -n $pid && -r /proc/$pid/stat ]] || continue
            [[ $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20) == "$st" ]] || continue
            kill -"$sig" "$pid" 2>/dev/null || true
        done <"$pidfile"
        [[ $sig == TERM ]] && sleep 0.5
    done
    for ns in "$PREFIX-a" "$PREFIX-b"; do
        if ip netns list | grep -qw -- "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
