# Shared by the reference scripts: start a small fedstat network on this machine, the
# way an operator would, with the fedstat CLI only. Source it, then:
#
#   network_init DIR NODES [SCHEMA...]     # CA, certificates, configs (studies = SCHEMA...);
#                                          # THRESHOLD and MIN_NODES default to NODES;
#                                          # POPULATIONS: the catalogue's populations_file;
#                                          # MAX_NODES_PER_PATIENT defaults to 1: split_csv
#                                          # deals each row (one patient) to one node
#   split_csv FILE NODES OUTDIR            # deal the rows of FILE round-robin to NODES files
#   fedstat node import --data-dir "$NET/node-1" --study NAME --schema S part-1.csv
#   network_start                          # coordinator + nodes, waits for the key ceremony
#   fedstat stats ...                      # FEDSTAT_* are exported for the analyst
#   network_stop                           # (also on exit)
#
# or, for one study table split across the nodes, in a temporary WORK directory:
#
#   study_network NAME SCHEMA CSV NODES    # init, split, import, start
#
# Needs: bash, curl, awk; FEDSTAT (the fedstat binary; built from the repository when unset).
# This is a demonstration network: every node gives the analyst a huge privacy budget so
# that the scripts can show answers at a large epsilon next to the published ones.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${FEDSTAT_SHARED_DATA:-$REPO/../shared/data}
if [[ -z "${FEDSTAT:-}" ]]; then
	FEDSTAT=$(mktemp -d)/fedstat
	(cd "$REPO" && go build -o "$FEDSTAT" ./cmd/fedstat)
fi
fedstat() { "$FEDSTAT" "$@"; }

PIDS=()

# free_port prints a port nobody listens on, below the kernel's ephemeral range (32768 and
# up), so that the nodes' port-0 listeners cannot take it before the coordinator binds it.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

toml_list() {
	local out="" x
	for x in "$@"; do out+="${out:+, }\"$x\""; done
	echo "[$out]"
}

# network_init DIR NODES [SCHEMA...]
network_init() {
	NET=$1 NODES=$2
	shift 2
	local studies
	studies=$(toml_list "$@")
	mkdir -p "$NET"
	local pki=$NET/pki
	fedstat ca init --dir "$pki" --network reference >/dev/null
	fedstat ca issue --dir "$pki" --name coordinator --role coordinator >/dev/null
	fedstat ca issue --dir "$pki" --name analyst --role analyst >/dev/null
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$NET/gossip.key"
	chmod 600 "$NET/gossip.key"
	local pops=""
	[[ -n "${POPULATIONS:-}" ]] && pops="populations_file = \"$POPULATIONS\""
	GRPC=127.0.0.1:$(free_port) OPS=127.0.0.1:$(free_port) GOSSIP=127.0.0.1:$(free_port)
	cat >"$NET/coordinator.toml" <<-EOF
		name = "coordinator"
		data_dir = "$NET/coordinator"
		pki_dir = "$pki"
		listen = "$GRPC"
		ops_listen = "$OPS"
		regions = ${REGIONS:-[]}
		max_nodes_per_patient = ${MAX_NODES_PER_PATIENT:-1}
		studies = $studies
		threshold = ${THRESHOLD:-$NODES}
		min_nodes = ${MIN_NODES:-$NODES}
		min_members = $NODES
		epoch_debounce = "1s"
		deadline = "60s"
		$pops

		[gossip]
		bind = "$GOSSIP"
		key_file = "$NET/gossip.key"
	EOF
	local i
	for ((i = 1; i <= NODES; i++)); do
		fedstat ca issue --dir "$pki" --name "node-$i" --role node >/dev/null
		cat >"$NET/node-$i.toml" <<-EOF
			name = "node-$i"
			data_dir = "$NET/node-$i"
			pki_dir = "$pki"
			listen = "127.0.0.1:0"
			ops_listen = "127.0.0.1:0"
			regions = ${REGIONS:-[]}
			max_nodes_per_patient = ${MAX_NODES_PER_PATIENT:-1}
			studies = $studies

			[policy]
			min_nodes = 2

			[budget]
			total_rho = 1e12
			per_analyst_rho = 1e12

			[gossip]
			bind = "127.0.0.1:0"
			key_file = "$NET/gossip.key"
			join = ["$GOSSIP"]
		EOF
	done
	export FEDSTAT_COORDINATOR=$GRPC FEDSTAT_CERT=$pki/analyst.crt FEDSTAT_KEY=$pki/analyst.key FEDSTAT_CA=$pki/ca.crt
}

# split_csv FILE NODES OUTDIR: OUTDIR/part-1.csv ... (header kept; rows dealt in turn).
split_csv() {
	mkdir -p "$3"
	awk -v n="$2" -v out="$3" 'NR == 1 { for (i = 1; i <= n; i++) print > (out "/part-" i ".csv"); next }
		{ print > (out "/part-" ((NR - 2) % n + 1) ".csv") }' "$1"
}

# study_network NAME SCHEMA CSV NODES: a started network of NODES nodes in a new temporary
# directory WORK, each holding its share of CSV's rows as study table NAME (schema SCHEMA).
study_network() {
	local name=$1 schema=$2 csv=$3 nodes=$4 i
	WORK=$(mktemp -d)
	network_init "$WORK/net" "$nodes" "$schema"
	split_csv "$csv" "$nodes" "$WORK/split"
	for ((i = 1; i <= nodes; i++)); do
		fedstat node import --data-dir "$WORK/net/node-$i" --study "$name" --schema "$schema" "$WORK/split/part-$i.csv" >&2
	done
	network_start
}

network_start() {
	"$FEDSTAT" coordinator --config "$NET/coordinator.toml" >"$NET/coordinator.log" 2>&1 &
	PIDS+=($!)
	local i
	for ((i = 1; i <= NODES; i++)); do
		"$FEDSTAT" node --config "$NET/node-$i.toml" >"$NET/node-$i.log" 2>&1 &
		PIDS+=($!)
	done
	# The key ceremony takes longer with many nodes: about 2 s a node.
	local tries=$((600 + NODES * 10))
	for ((i = 0; i < tries; i++)); do
		if curl -fsS "http://$OPS/readyz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "the network did not become ready; logs in $NET" >&2
	return 1
}

network_stop() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap network_stop EXIT
