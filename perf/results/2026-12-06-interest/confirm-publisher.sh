#!/usr/bin/env bash
# Publisher throughput with and without confirmation, alternated: one market_data_relay, one
# subscriber, one publisher of 128-byte frames.
set -u
P=/work/main/target/release/torq-perf
R=/work/main/target/release/market_data_relay
N=${N:-3000000}
for round in 1 2 3; do
  for mode in legacy confirm legacy confirm; do
    d=$(mktemp -d); s=$d/md.sock
    $R --socket $s --cores none:1 --slow-consumer block -l warn & rp=$!
    for i in $(seq 50); do [ -S $s ] && break; sleep 0.05; done
    $P subscribe --socket $s --frames $N > $d/sub.json 2>/dev/null & sp=$!
    sleep 0.3
    if [ $mode = confirm ]; then flag=--confirm; else flag=; fi
    $P publish --socket $s --frames $N --size 128 $flag > $d/pub.json 2>$d/pub.err
    wait $sp
    echo "$round $mode pub=$(python3 -c "import json;print(round(json.load(open('$d/pub.json'))['rate']/1e6,3))") sub=$(python3 -c "import json;d=json.load(open('$d/sub.json'));print(round(d.get('rate',0)/1e6,3))")"
    kill $rp; wait $rp 2>/dev/null; rm -rf $d
  done
done
