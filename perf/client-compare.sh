#!/bin/bash
# The client library against hand-written clients: one market-data relay (1 reactor), one
# `PUB publish` of 10 M frames and one `SUB subscribe`, each PUB/SUB a torq-perf binary (e.g.
# one built before the clients moved onto the library). Prints "publisher CPU s, subscriber
# CPU s, subscriber rate (frames/s), publisher rate (frames/s)".
#
#   perf/client-compare.sh RELAY PUB SUB
R=${1:?usage: perf/client-compare.sh RELAY PUB SUB}
shift
d=$(mktemp -d); s=$d/r.sock
$R --socket $s --cores none:1 -l warn 2>/dev/null & rp=$!
for i in $(seq 50); do [ -S $s ] && break; sleep 0.02; done
/usr/bin/time -f "%U %S" -o $d/sub.time $2 subscribe --socket $s --frames 10000000 --idle-ms 2000 > $d/sub.out &
sp=$!
sleep 0.3
/usr/bin/time -f "%U %S" -o $d/pub.time $1 publish --socket $s --frames 10000000 > $d/pub.out
wait $sp
kill $rp; wait $rp 2>/dev/null
echo "$(awk '{print $1+$2}' $d/pub.time) $(awk '{print $1+$2}' $d/sub.time) $(grep -o '"rate":[0-9.]*' $d/sub.out | head -1 | cut -d: -f2) $(grep -o '"rate":[0-9.]*' $d/pub.out | head -1 | cut -d: -f2)"
rm -rf $d
