#!/bin/sh
# One-shot: the network CA, certificates and the gossip key, in /pki.
# Idempotent: does nothing when /pki/ca.crt exists.
set -eu
if [ -f /pki/ca.crt ]; then
  echo "pki already initialised"
  exit 0
fi
fedstat ca init --dir /pki --network compose
fedstat ca issue --dir /pki --name coordinator --role coordinator --host coordinator --host localhost
for n in node-1 node-2 node-3; do
  fedstat ca issue --dir /pki --name "$n" --role node --host "$n"
done
fedstat ca issue --dir /pki --name operator --role operator
fedstat ca issue --dir /pki --name analyst --role analyst
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > /pki/gossip.key
chmod 600 /pki/gossip.key
