#!/bin/bash
# Runs inside the Debian guest (as exo-conformance.service) against the exo units rendered from
# nix/lib. Every check prints one "EXO-CHECK ok|FAIL: ..." line on the serial console; the last
# line is "EXO-CONFORMANCE: PASS" or "EXO-CONFORMANCE: FAIL <count>". The host script reads them.
set -u

fails=0
ok() { echo "EXO-CHECK ok: $*"; }
bad() {
  echo "EXO-CHECK FAIL: $*"
  fails=$((fails + 1))
}

units=(exo-master exo-worker exo-api)
role_of() { echo "${1#exo-}"; }
main_pid() { systemctl show -p MainPID --value "$1"; }
restarts() { systemctl show -p NRestarts --value "$1"; }
now() { date +%s.%N; }

# wait_for CMD... retries for up to $timeout seconds.
wait_for() {
  local t=0
  until "$@" >/dev/null 2>&1; do
    t=$((t + 1))
    [ "$t" -ge "${timeout:-120}" ] && return 1
    sleep 1
  done
}

dump() {
  systemctl status "$1" --no-pager -l 2>&1 | tail -n 20
  journalctl -u "$1" --no-pager -o short-monotonic 2>&1 | tail -n 30
}

echo "EXO-CHECK info: $(systemctl --version | head -n1), kernel $(uname -r)"

# 1. Every unit reaches READY=1 (Type=notify turns "active" only then) under the full sandbox.
systemctl start --no-block exo.target
for u in "${units[@]}"; do
  if timeout=180 wait_for systemctl is-active --quiet "$u"; then
    ok "$u active: READY=1 received under Type=notify"
  else
    bad "$u did not become active"
    dump "$u"
  fi
done

# 1b. The join token oneshot ran between the master's READY and the co-located units' start, left
# a token only the exo user can read, and those units were admitted with it.
mono() { systemctl show -p "$2" --value "$1"; }
tok=exo-join-token
if [ "$(mono $tok ActiveState)/$(mono $tok SubState)/$(mono $tok Result)" = active/exited/success ]; then
  ok "$tok ran to completion (Type=oneshot, RemainAfterExit)"
else
  bad "$tok: $(mono $tok ActiveState)/$(mono $tok SubState)/$(mono $tok Result)"
  dump "$tok"
fi
ready=$(mono exo-master ActiveEnterTimestampMonotonic)
minted_start=$(mono $tok ExecMainStartTimestampMonotonic)
minted=$(mono $tok ActiveEnterTimestampMonotonic)
order_ok=1
# No restarts: a unit started before the token existed would have failed to load its credential.
for u in exo-worker exo-api; do
  first=$(mono "$u" ExecMainStartTimestampMonotonic)
  if ! [ "$ready" -gt 0 ] || ! [ "$minted_start" -ge "$ready" ] || ! [ "$first" -ge "$minted" ] || [ "$(restarts "$u")" != 0 ]; then
    order_ok=0
    bad "order: master READY $ready, $tok started $minted_start and done $minted, $u started $first ($(restarts "$u") restarts)"
  fi
done
[ "$order_ok" = 1 ] && ok "order: exo-master READY, then $tok, then exo-worker and exo-api"
f=/run/exo-join-token/join-token
if [ "$(stat -c '%a %U' "$f" 2>/dev/null)" = "600 exo" ] && grep -q '^exo1\.' "$f"; then
  ok "$f: a join token, mode 600, owned by exo"
else
  bad "$f: $(stat -c '%a %U' "$f" 2>&1)"
fi
alive() {
  curl -sf http://127.0.0.1:52415/api/v1/nodes | tr -d ' \n' |
    grep -q "\"name\":\"conformance-$1\",\"roles\":\[[^]]*\],\"status\":\"alive\""
}
for role in master worker api; do
  if timeout=120 wait_for alive "$role"; then
    ok "conformance-$role is an alive member of the master's cluster"
  else
    bad "conformance-$role not alive in /api/v1/nodes: $(curl -sf http://127.0.0.1:52415/api/v1/nodes | cut -c1-400)"
    dump "exo-$role"
  fi
done

# 2. The API answers.
if timeout=60 wait_for curl -sf http://127.0.0.1:52415/readyz; then
  ok "/readyz: $(curl -sf http://127.0.0.1:52415/readyz | tr -d '\n' | cut -c1-200)"
else
  bad "/readyz does not answer 200"
fi

# 3. Log lines reach the journal under each unit's SyslogIdentifier, with syslog priorities.
# journal_has [journalctl args...] PATTERN: whether the journal holds a matching line, after
# asking journald to write out what it holds. Retried (wait_for): journalctl reading a journal
# file that journald is writing may find it "truncated" and skip it for that call (one CI run
# lost exo-api's info lines so).
journal_has() {
  local pat=${*: -1}
  journalctl --sync 2>/dev/null || true
  journalctl "${@:1:$#-1}" -o cat --no-pager | grep -q -- "$pat"
}
for u in "${units[@]}"; do
  if timeout=30 wait_for journal_has -t "$u" 'starting exo node'; then
    ok "$u logs in the journal as $u"
  else
    bad "$u: no 'starting exo node' under identifier $u"
  fi
done
# exo prefixes each line with its syslog priority ("<6>") under the journal; journald strips a
# prefix it understood, so a raw one in the stored message means the format was not recognised.
if journalctl -t exo-api -o cat --no-pager | grep -q '^<[0-7]>'; then
  bad "raw <N> priority prefixes stored in the journal"
elif timeout=30 wait_for journal_has -t exo-api -p info 'api listening'; then
  ok "journal priorities parsed (no raw <N> prefix; info lines at priority info)"
else
  bad "no info-priority line from exo-api"
fi

# 4. The sandbox as the service sees it: enter the mount namespace of its main process.
echo secret >/root/secret
for u in "${units[@]}"; do
  role=$(role_of "$u")
  pid=$(main_pid "$u")
  ns=(nsenter --target "$pid" --mount --)
  if "${ns[@]}" cat /root/secret >/dev/null 2>&1; then bad "$u can read /root"; else ok "$u cannot read /root"; fi
  if "${ns[@]}" touch /etc/exo-probe 2>/dev/null; then bad "$u can write /etc"; else ok "$u cannot write /etc"; fi
  if "${ns[@]}" touch /var/lib/exo-probe 2>/dev/null; then bad "$u can write /var/lib"; else ok "$u cannot write /var/lib"; fi
  other=master
  [ "$role" = master ] && other=api
  if "${ns[@]}" touch "/var/lib/exo/$other/probe" 2>/dev/null; then
    bad "$u can write the $other unit's state directory"
  else
    ok "$u cannot write /var/lib/exo/$other"
  fi
  if "${ns[@]}" touch "/var/lib/exo/$role/probe" && [ -e "/var/lib/exo/$role/probe" ]; then
    ok "$u writes its state directory /var/lib/exo/$role"
  else
    bad "$u cannot write its state directory"
  fi
  if "${ns[@]}" test -e /dev/vda; then bad "$u sees /dev/vda"; else ok "$u sees no block devices"; fi
  capeff=$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")
  nnp=$(awk '/^NoNewPrivs/ {print $2}' "/proc/$pid/status")
  uid=$(awk '/^Uid/ {print $2}' "/proc/$pid/status")
  if [ "$capeff" = 0000000000000000 ] && [ "$nnp" = 1 ] && [ "$uid" != 0 ]; then
    ok "$u runs as uid $uid without capabilities, NoNewPrivs"
  else
    bad "$u: CapEff=$capeff NoNewPrivs=$nnp uid=$uid"
  fi
done

# 5. The exposure score of the live units.
for u in "${units[@]}" exo-join-token; do
  score=$(systemd-analyze security --no-pager "$u.service" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    ok "$u exposure $score <= 2.0"
  else
    bad "$u exposure '${score}' above 2.0"
  fi
done

# 6. kill -9 brings the unit back, each time after a longer delay (RestartSteps backoff). The
# delay is read from systemd's own journal entries (process killed -> restart job scheduled), so the
# time the binary takes to start under emulation does not blur it.
u=exo-worker
back=0
for n in 1 2 3; do
  before=$(restarts "$u")
  kill -9 "$(main_pid "$u")"
  if timeout=180 wait_for bash -c "[ \$(systemctl show -p NRestarts --value $u) -gt $before ] && systemctl is-active --quiet $u"; then
    back=$((back + 1))
  else
    bad "$u not back after kill -9 number $n"
    dump "$u"
    break
  fi
done
# The delay from each kill to its scheduled restart, from the unit's journal (read again for
# up to 30 s until it shows all three: see journal_has).
restart_delays() {
  journalctl --sync 2>/dev/null || true
  journalctl -u "$1" -o short-unix --no-pager | awk '
    /Main process exited, code=killed, status=9\/KILL/ { killed = $1 }
    /Scheduled restart job/ && killed != "" { printf "%.2f ", $1 - killed; killed = "" }'
}
# Sets delays and d; true once all three show.
three_delays() {
  delays=$(restart_delays "$u")
  read -r -a d <<<"$delays"
  [ ${#d[@]} -ge 3 ]
}
timeout=30 wait_for three_delays || true
if [ "$back" -eq 3 ] && [ ${#d[@]} -eq 3 ] && awk -v a="${d[0]}" -v b="${d[1]}" -v c="${d[2]}" 'BEGIN { exit !(a >= 0.9 && a < b && b < c && c <= 61) }'; then
  ok "kill -9 restarts after growing delays: ${delays}s (RestartSec=1s, RestartSteps=6, RestartMaxDelaySec=1min)"
else
  bad "restart delays not growing from 1s: '${delays}' (${back} restarts)"
fi

# 7. A configuration error (exit status 2) is not retried. The worker next to the master does not
# follow the master's restarts (it only wants the token unit, which is ordered after the master).
worker_pid=$(main_pid exo-worker)
systemctl set-environment EXO_LOG__LEVEL=loud
systemctl restart exo-master.service >/dev/null 2>&1
sleep 5
if [ "$(main_pid exo-worker)" = "$worker_pid" ] && systemctl is-active --quiet exo-worker; then
  ok "exo-worker keeps running while exo-master restarts"
else
  bad "exo-worker was restarted or stopped with exo-master (pid $worker_pid -> $(main_pid exo-worker))"
fi
state=$(systemctl show -p ActiveState --value exo-master)
status=$(systemctl show -p ExecMainStatus --value exo-master)
n=$(restarts exo-master)
if [ "$state" = failed ] && [ "$status" = 2 ] && [ "$n" = 0 ]; then
  ok "exit status 2 stops the unit without restarts"
else
  bad "config error: state=$state status=$status restarts=$n"
fi
systemctl unset-environment EXO_LOG__LEVEL
systemctl reset-failed exo-master.service
systemctl start exo-master.service
# The token outlives the token unit's stop (RuntimeDirectoryPreserve=yes), so the co-located units
# can still load their credential on a restart; starting the worker anew mints it again.
if [ -s /run/exo-join-token/join-token ] && systemctl restart exo-worker.service &&
  timeout=120 wait_for systemctl is-active --quiet exo-worker && [ "$(mono $tok ActiveState)" = active ]; then
  ok "exo-worker restarts with its credential after the master's restart; $tok active again"
else
  bad "exo-worker after the master's restart: $(systemctl is-active exo-worker), $tok $(mono $tok ActiveState)"
  dump exo-worker
  dump "$tok"
fi

# 8. SIGTERM drains and exits cleanly (STOPPING=1, exit 0).
systemctl stop exo.target
for u in "${units[@]}"; do
  result=$(systemctl show -p Result --value "$u")
  status=$(systemctl show -p ExecMainStatus --value "$u")
  if [ "$result" = success ] && [ "$status" = 0 ]; then
    ok "$u stopped cleanly"
  else
    bad "$u stop: result=$result status=$status"
  fi
done

# 9. The token unit's sandbox and retries, probed through drop-ins that replace only its command:
# of /var/lib/exo it sees the master's state directory alone, read-only; and pointed at a
# directory without a CA, exo fails, the unit retries (Restart=on-failure) and then fails for
# good, the missing file named in its journal.
dropin=/run/systemd/system/exo-join-token.service.d
mkdir -p "$dropin"
cat >"$dropin/probe.conf" <<'EOF_DROPIN'
[Service]
ExecStart=
ExecStart=/bin/sh -c 'p=/run/exo-join-token/probe; ls -A /var/lib/exo >$p; touch /var/lib/exo/master/probe 2>/dev/null && echo WROTE >>$p; true'
EOF_DROPIN
systemctl daemon-reload
# restart, not start: a start of the oneshot while it is still active (RemainAfterExit) runs
# nothing, and one CI run found no probe file that way.
systemctl restart exo-join-token.service
seen=$(tr '\n' ' ' </run/exo-join-token/probe 2>/dev/null)
if [ "$seen" = "master " ]; then
  ok "$tok sees only /var/lib/exo/master, read-only"
else
  bad "$tok sees '$seen' in /var/lib/exo (want only master, not writable); unit: $(systemctl show -p ActiveState -p Result -p ExecMainStatus "$tok" | tr '\n' ' ')"
fi
systemctl stop exo-join-token.service exo-master.service
sed -i 's|^ExecStart=/bin/sh.*|ExecStart=/usr/local/bin/exo cluster token --from-data-dir /var/lib/exo/nowhere --out %t/exo-join-token/join-token|' "$dropin/probe.conf"
systemctl daemon-reload
systemctl start --no-block exo-join-token.service
if timeout=150 wait_for bash -c "[ \$(systemctl show -p ActiveState --value $tok) = failed ]" &&
  [ "$(restarts $tok)" -ge 3 ] &&
  timeout=30 wait_for journal_has -u $tok 'read cluster CA: open /var/lib/exo/nowhere/cluster/ca.crt'; then
  ok "without a CA $tok retried $(restarts $tok) times, then failed ($(mono $tok Result)), naming the missing ca.crt"
else
  bad "$tok without a CA: $(mono $tok ActiveState)/$(mono $tok Result) after $(restarts $tok) restarts"
  dump "$tok"
fi
rm -rf "$dropin"
systemctl daemon-reload
systemctl stop exo.target

if [ "$fails" -eq 0 ]; then
  echo "EXO-CONFORMANCE: PASS"
else
  echo "EXO-CONFORMANCE: FAIL $fails"
fi
