#!/usr/bin/env bash
# netns.sh: "hosts" for multi-host load generation on one machine.
#
# A coordinator loadgen starts loadgen agents on other hosts over plain OpenSSH.
# Without spare machines (and in tests) those hosts are network namespaces of
# this machine, each with its own sshd, built by this script:
#
#   root namespace (the server host)            namespace ${P}h$i (agent host i)
#     ${P}srv  ${NET}.${BASE}.1/32  <- a server listens here (e.g. :7000)
#     ${P}v$i  ${NET}.$((BASE+i)).1/24  <==veth==>  eth0 ${NET}.$((BASE+i)).2/24
#                                                   default via ${NET}.$((BASE+i)).1
#                                                   sshd on ${NET}.$((BASE+i)).2:22
#
# The hosts only ever talk to addresses of the root namespace itself, so no IP
# forwarding, NAT or firewall change is needed, and no root-namespace sysctl is
# touched. Addresses come from the benchmarking range 198.18.0.0/15 (RFC 2544),
# which no real network uses.
#
# Usage: scripts/netns.sh up|down|status [options]   (scripts/netns.sh -h)
# Exit status: 0 done; 1 failed; 2 refused (usage, not root, a missing tool, or a
# network namespace or interface that cannot be created here). status exits 1
# when nothing with that prefix exists.
set -euo pipefail

prog=netns.sh

usage() {
	cat <<'EOF'
usage: scripts/netns.sh up|down|status [options]

  up      build the hosts (tearing down an existing topology with the same prefix
          first), start their sshds, authorize the client key, record their host
          keys in the known_hosts file and print one line per host
  down    stop the sshds (and whatever else runs in the hosts: ssh sessions,
          agents) and remove everything up made (also a half-built or
          absent topology: it is idempotent)
  status  list what exists for the prefix

options (each also settable by the environment variable in brackets; a flag wins):
  -n K               number of agent hosts, 1..200 (default 2)      [NETNS_HOSTS]
  -prefix P          prefix of every name made: namespaces PhI, veths PvI, the
                     server's interface Psrv (default cb)            [NETNS_PREFIX]
  -net A.B           the /16 used: 198.18 or 198.19 (default 198.18) [NETNS_NET]
  -base N            host i uses A.B.(N+i).0/24, the server A.B.N.1 (default 0),
                     so several topologies can share one /16         [NETNS_BASE]
  -dir DIR           state directory: host keys, sshd configs, pid files, logs
                     (default /tmp/concbench-netns-P)                [NETNS_DIR]
  -pubkey FILE       the client public key to authorize (default ~/.ssh/id_ed25519.pub;
                     made with ssh-keygen if neither it nor ~/.ssh/id_ed25519 exist)
                                                                     [NETNS_PUBKEY]
  -known-hosts FILE  where the hosts' keys are written, so that ssh checks them
                     (default ~/.ssh/known_hosts)                    [NETNS_KNOWN_HOSTS]
  -path DIR          put DIR first on the PATH of the hosts' ssh sessions, so that
                     `loadgen` there is this checkout's (default: its bin/, where
                     make build puts loadgen; the hosts share this machine's files)
                                                                     [NETNS_PATH]

Then, e.g.: ssh root@198.18.1.2   (host key checking stays on: the keys are in
the known_hosts file). down and status read the settings up recorded in DIR, so
they need only the prefix (and -dir if it was given to up).
EOF
}

say() { echo "$prog: $*" >&2; }
die() { say "$*"; exit 1; }
# refuse: an environment or usage problem, not a failure of the topology (exit 2,
# which internal/netnstest turns into a skipped test).
refuse() { say "$*"; exit 2; }

# ---- settings: environment first, flags override ---------------------------------
cmd=${1:-}
case $cmd in
up | down | status) shift ;;
-h | -help | --help | help) usage; exit 0 ;;
'') usage >&2; exit 2 ;;
*) say "unknown command '$cmd' (want up, down or status)"; usage >&2; exit 2 ;;
esac

HOSTS=${NETNS_HOSTS:-2}
PREFIX=${NETNS_PREFIX:-cb}
NET=${NETNS_NET:-198.18}
BASE=${NETNS_BASE:-0}
DIR=${NETNS_DIR:-}
PUBKEY=${NETNS_PUBKEY:-}
KNOWN_HOSTS=${NETNS_KNOWN_HOSTS:-}
AGENT_PATH=${NETNS_PATH:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin}
# Which settings the command line gave: down prefers what up recorded, except these.
declare -A given=()

while (($#)); do
	opt=$1 val='' hasval=0
	[[ $opt == --?* ]] && opt=${opt#-} # accept --flag as well as -flag
	if [[ $opt == -*=* ]]; then        # and -flag=value as well as -flag value
		val=${opt#*=} opt=${opt%%=*} hasval=1
	fi
	case $opt in
	-h | -help) usage; exit 0 ;;
	-n | -prefix | -net | -base | -dir | -pubkey | -known-hosts | -path)
		if ((!hasval)); then
			(($# >= 2)) || refuse "option $opt needs a value"
			val=$2
			shift
		fi
		;;
	*) refuse "unknown option '$1' (scripts/netns.sh -h lists them)" ;;
	esac
	case $opt in
	-n) HOSTS=$val ;;
	-prefix) PREFIX=$val ;;
	-net) NET=$val ;;
	-base) BASE=$val ;;
	-dir) DIR=$val ;;
	-pubkey) PUBKEY=$val ;;
	-known-hosts) KNOWN_HOSTS=$val ;;
	-path) AGENT_PATH=$val ;;
	esac
	given[$opt]=1
	shift
done

# validate checks the numeric settings and the names they lead to.
validate() {
	if ! [[ $HOSTS =~ ^[0-9]+$ ]] || ((10#$HOSTS < 1 || 10#$HOSTS > 200)); then
		refuse "-n $HOSTS: want a number of hosts from 1 to 200"
	fi
	HOSTS=$((10#$HOSTS))
	# Only the benchmarking range 198.18.0.0/15: never a private or routed network.
	[[ $NET == 198.18 || $NET == 198.19 ]] ||
		refuse "-net $NET: want 198.18 or 198.19 (the benchmarking range 198.18.0.0/15, nothing else)"
	if ! [[ $BASE =~ ^[0-9]+$ ]] || ((10#$BASE > 254)); then
		refuse "-base $BASE: want a number from 0 to 254"
	fi
	BASE=$((10#$BASE))
	((BASE + HOSTS <= 255)) ||
		refuse "-base $BASE -n $HOSTS: host $HOSTS would need third octet $((BASE + HOSTS)) (over 255)"
	# Interface names must fit IFNAMSIZ (16 bytes with the NUL): the longest made
	# are ${PREFIX}v$HOSTS and ${PREFIX}srv.
	local longest=${PREFIX}v$HOSTS
	((${#longest} >= ${#PREFIX} + 3)) || longest=${PREFIX}srv
	((${#longest} <= 15)) ||
		refuse "-prefix '$PREFIX' is too long: interface name $longest would exceed 15 characters (IFNAMSIZ)"
}

# Names are matched by pattern (${PREFIX}h[0-9]+ ...) when tearing down, so keep the
# prefix to letters and digits: no regex or shell metacharacters, no path tricks.
[[ $PREFIX =~ ^[A-Za-z][A-Za-z0-9]*$ ]] ||
	refuse "-prefix '$PREFIX': want a letter followed by letters and digits"

DIR=${DIR:-/tmp/concbench-netns-$PREFIX}
[[ $DIR == /* ]] || DIR=$PWD/$DIR # sshd wants absolute paths in its config
MARKER=$DIR/topology.env          # written first by up: DIR is ours to delete

# ---- helpers -------------------------------------------------------------------
need_root() {
	[[ $EUID -eq 0 ]] || refuse "$cmd needs root (network namespaces, interfaces, sshd on port 22): run it with sudo"
	command -v ip >/dev/null || refuse "'ip' not found: apt-get install iproute2"
}

# find_sshd sets SSHD to sshd's absolute path (sshd re-executes itself by it).
find_sshd() {
	SSHD=$(command -v sshd || true)
	[[ -n $SSHD ]] || { [[ -x /usr/sbin/sshd ]] && SSHD=/usr/sbin/sshd; } ||
		refuse "sshd not found: apt-get install openssh-server iproute2"
	command -v ssh-keygen >/dev/null || refuse "ssh-keygen not found: apt-get install openssh-client"
}

# Our namespaces and links, found by name (not by 1..HOSTS), so that down also
# removes hosts of an up with a larger -n or one whose state directory is gone.
our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}h[0-9]+$" || true; }
our_links() {
	ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
		grep -E "^(${PREFIX}v[0-9]+|${PREFIX}srv)$" || true
}

# read_state loads the settings up recorded in MARKER (plain KEY=value lines,
# parsed, not sourced), except those given on this command line.
read_state() {
	[[ -f $MARKER ]] || return 0
	local k v
	while IFS='=' read -r k v; do
		case $k in
		NET) [[ -n ${given[-net]:-} ]] || NET=$v ;;
		BASE) [[ -n ${given[-base]:-} ]] || BASE=$v ;;
		HOSTS) [[ -n ${given[-n]:-} ]] || HOSTS=$v ;;
		KNOWN_HOSTS) [[ -n ${given[-known-hosts]:-} ]] || KNOWN_HOSTS=$v ;;
		esac
	done <"$MARKER"
}

# forget_hosts removes the known_hosts entries of the given addresses. Only a
# regular file is edited: never /dev/null or a file that is not there.
forget_hosts() {
	[[ -f $KNOWN_HOSTS ]] || return 0
	command -v ssh-keygen >/dev/null || { say "ssh-keygen not found: entries for $* stay in $KNOWN_HOSTS"; return 0; }
	local a
	for a; do
		# -R keeps the previous contents in $KNOWN_HOSTS.old; its chatter goes.
		ssh-keygen -R "$a" -f "$KNOWN_HOSTS" >/dev/null 2>&1 || say "ssh-keygen -R $a -f $KNOWN_HOSTS failed"
	done
}

# is_our_sshd PID: the pid file may be stale and the pid reused, so check that
# the process is an sshd started with one of our configs before killing it.
is_our_sshd() {
	local pid=$1 cmdline
	[[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *sshd* && $cmdline == *"$DIR/sshd_config."* ]]
}

# running PID: the process exists and is not a zombie. (A daemonized sshd is
# reaped by pid 1, which may take its time; a zombie has already left its
# namespaces.)
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # the command name, field 2, may hold anything but ends with ')'
	[[ ${stat%% *} != [ZX] ]]
}

# wait_gone PID...: up to ~2 s for the processes to exit, then SIGKILL.
wait_gone() {
	local pid left
	for _ in {1..20}; do
		left=()
		for pid; do running "$pid" && left+=("$pid"); done
		((${#left[@]})) || return 0
		sleep 0.1
	done
	say "still running after SIGTERM, killing: ${left[*]}"
	kill -KILL "${left[@]}" 2>/dev/null || true
}

# ---- down ----------------------------------------------------------------------
do_down() {
	local ns i f pid pids=() addrs=() link

	# The listening sshds, by pid file: also those whose namespace was deleted by
	# hand (a running process keeps its namespace, and so the veth, alive).
	for f in "$DIR"/sshd.*.pid; do
		[[ -f $f ]] || continue
		pid=$(<"$f")
		is_our_sshd "$pid" && pids+=("$pid")
	done
	# Everything else running in our namespaces: ssh sessions (and what they
	# started, e.g. loadgen agents) outlive their sshd and would keep the
	# namespace alive.
	for ns in $(our_netns); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			[[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
		done
	done
	if ((${#pids[@]})); then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		wait_gone "${pids[@]}"
	fi

	for ns in $(our_netns); do
		i=$((10#${ns#"${PREFIX}h"}))
		addrs+=("$NET.$((BASE + i)).2")
		ip netns del "$ns" 2>/dev/null || say "ip netns del $ns failed"
	done
	# Deleting a namespace deletes its end of the veth and so the pair, but the
	# kernel does that asynchronously: delete the root ends too (either may win).
	for link in $(our_links); do ip link del "$link" 2>/dev/null || true; done
	for _ in {1..20}; do
		[[ -z $(our_links) ]] && break
		sleep 0.1
	done
	[[ -z $(our_links) ]] || say "interfaces still there: $(our_links | tr '\n' ' ')"

	for ((i = 1; i <= HOSTS; i++)); do addrs+=("$NET.$((BASE + i)).2"); done
	# shellcheck disable=SC2046 # addresses have no spaces; sort -u drops duplicates
	forget_hosts $(printf '%s\n' "${addrs[@]}" | sort -u)

	# Delete DIR only if up made it (it holds the marker): never a directory the
	# user pointed -dir at by mistake.
	if [[ -f $MARKER ]]; then
		rm -rf -- "$DIR"
	elif [[ -d $DIR ]]; then
		rmdir -- "$DIR" 2>/dev/null || say "$DIR has no $MARKER: not deleting it"
	fi
	[[ -z $(our_netns) && -z $(our_links) ]] || die "down left something behind (see above)"
}

# ---- up ------------------------------------------------------------------------

# resolve_pubkey sets PUBKEY, making the default key pair if there is none.
resolve_pubkey() {
	if [[ -n $PUBKEY ]]; then
		[[ -r $PUBKEY ]] || die "-pubkey $PUBKEY: no such readable file"
		return
	fi
	local key=$HOME/.ssh/id_ed25519
	PUBKEY=$key.pub
	[[ -r $PUBKEY ]] && return
	[[ -d $HOME/.ssh ]] || mkdir -m 700 "$HOME/.ssh"
	if [[ -e $key ]]; then
		# A private key without its .pub: derive it (fails on a passphrase).
		ssh-keygen -y -P '' -f "$key" >"$PUBKEY" 2>/dev/null ||
			{ rm -f "$PUBKEY"; die "$key has no $PUBKEY and it cannot be derived without a passphrase; give -pubkey"; }
		say "wrote $PUBKEY (the public half of $key)"
	else
		say "no ssh key: generating $key (ed25519, no passphrase) with ssh-keygen; ssh uses it by default"
		ssh-keygen -q -t ed25519 -N '' -C "concbench-netns@${HOSTNAME:-localhost}" -f "$key" >&2 ||
			die "ssh-keygen -t ed25519 -f $key failed"
	fi
}

# check_addresses refuses when an address this topology needs is already on an
# interface of the root namespace (another topology, or a -net/-base clash):
# two interfaces with one /24 would route the hosts' replies to the wrong one.
check_addresses() {
	local dev addr o
	while read -r dev addr; do
		addr=${addr%/*}
		[[ $addr == "$NET".* ]] || continue
		o=${addr#"$NET".}
		o=${o%%.*}
		if ((o >= BASE && o <= BASE + HOSTS)); then
			refuse "$addr is already on interface $dev: the range $NET.$BASE.0-$NET.$((BASE + HOSTS)).255 is in use (another topology? choose another -base or -net, or take it down)"
		fi
	done < <(ip -4 -o addr show | awk '{print $2, $4}')
}

# sshd_config I ADDR writes host i's sshd configuration.
sshd_config() {
	local i=$1 addr=$2
	cat <<EOF
# sshd of netns host ${PREFIX}h$i, written by scripts/netns.sh (throwaway)
ListenAddress $addr:22
AddressFamily inet
HostKey "$DIR/ssh_host_ed25519_key.$i"
PidFile "$DIR/sshd.$i.pid"
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# A copy of the client key, in DIR; StrictModes no: DIR may be any temporary
# directory, whose parents sshd would otherwise insist on inspecting.
AuthorizedKeysFile "$DIR/authorized_keys"
# Only PATH, from the key's environment= option: the sessions find loadgen.
PermitUserEnvironment PATH
StrictModes no
# Debian 12's scp speaks SFTP: agents' binaries are copied with it.
Subsystem sftp internal-sftp
LogLevel VERBOSE
# A coordinator opens a session per agent (and maybe several per host) at once:
# start refusing unauthenticated connections only well beyond a few dozen.
MaxStartups 100:30:200
MaxSessions 100
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
EOF
	# OpenSSH 9.8+ penalizes sources with failed or aborted logins; tests that
	# check host key verification fail on purpose, so turn it off where it exists.
	((penalties)) && echo "PerSourcePenalties no"
	return 0
}

# wait_ssh ADDR I: until sshd at ADDR:22 sends its banner, for at most ~5 s.
wait_ssh() {
	local addr=$1 i=$2 banner
	for _ in {1..50}; do
		# shellcheck disable=SC2016 # $0 is expanded by the inner bash
		banner=$(timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/22" && head -c 4 <&3' "$addr" 2>/dev/null || true)
		[[ $banner == SSH- ]] && return 0
		sleep 0.1
	done
	say "host ${PREFIX}h$i: sshd does not answer on $addr:22 after 5 s; its log, $DIR/sshd.$i.log, ends:"
	tail -n 20 "$DIR/sshd.$i.log" >&2 2>/dev/null || true
	die "host ${PREFIX}h$i not ready"
}

do_up() {
	local i o ns veth haddr raddr out srvtype=dummy err ktype key

	# Settle everything that can be refused before building anything.
	resolve_pubkey
	[[ -z $KNOWN_HOSTS ]] && KNOWN_HOSTS=$HOME/.ssh/known_hosts
	if [[ -e $DIR && ! -f $MARKER ]] && [[ -n $(ls -A "$DIR" 2>/dev/null) || ! -d $DIR ]]; then
		refuse "-dir $DIR exists and was not made by $prog (no topology.env): choose another"
	fi

	# An existing topology with this prefix: rebuild rather than refuse, so that
	# `up` can be rerun (say, with another -n) without a `down` first.
	if [[ -n $(our_netns) || -n $(our_links) || -f $MARKER ]]; then
		say "a topology with prefix $PREFIX exists: tearing it down first"
		# It goes as up recorded it (its addresses and known_hosts file), so
		# read the recorded settings over this command line's, then put them back.
		local new=("$NET" "$BASE" "$HOSTS" "$KNOWN_HOSTS")
		given=()
		read_state
		do_down
		NET=${new[0]} BASE=${new[1]} HOSTS=${new[2]} KNOWN_HOSTS=${new[3]}
	fi
	check_addresses

	# /run/sshd: the privilege separation directory sshd insists on (missing
	# where the system sshd never ran, e.g. in a container).
	[[ -d /run/sshd ]] || mkdir -m 0755 /run/sshd

	# The state directory, private (it holds host keys), and the marker that
	# lets down delete it and find the settings.
	# From here on a failure leaves the half-built topology for inspection
	# (the sshd logs are in DIR) and says how to remove it.
	trap 'rc=$?; ((rc == 1)) && say "up failed; what was built stays for inspection: scripts/netns.sh down -prefix $PREFIX -dir $DIR removes it"' EXIT
	(umask 077 && mkdir -p -- "$DIR")
	[[ -d $DIR && ! -L $DIR && -O $DIR ]] || die "$DIR: not a directory of ours (a symlink, or another owner)"
	chmod 700 "$DIR"
	printf 'NET=%s\nBASE=%s\nHOSTS=%s\nKNOWN_HOSTS=%s\nPREFIX=%s\n' \
		"$NET" "$BASE" "$HOSTS" "$KNOWN_HOSTS" "$PREFIX" >"$MARKER"
	# Each key line gets the sessions' PATH (PermitUserEnvironment PATH below):
	# -path first, then sshd's usual one, so that `loadgen` on a host is found
	# as on a machine where it is installed.
	local keypath="$AGENT_PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	[[ $keypath != *['"|']* ]] || refuse "-path $AGENT_PATH: a double quote or | cannot go in authorized_keys"
	sed -e '/^[[:space:]]*$/d' -e '/^[[:space:]]*#/d' -e "s|^|environment=\"PATH=$keypath\" |" -- "$PUBKEY" >"$DIR/authorized_keys"

	# Does this sshd know PerSourcePenalties (OpenSSH 9.8+)? sshd -t of a config
	# with only that option complains of the missing host key either way, and
	# of a bad option only where it does not.
	penalties=1
	printf 'PerSourcePenalties no\n' >"$DIR/probe_config"
	out=$("$SSHD" -t -f "$DIR/probe_config" 2>&1 || true)
	[[ $out == *"Bad configuration option: PerSourcePenalties"* ]] && penalties=0
	rm -f "$DIR/probe_config"

	# The server host: this namespace. A dummy interface holds the server
	# address; where the kernel lacks dummy (CONFIG_DUMMY off, no modules, as in
	# some VMs) an ifb device does the job: neither carries traffic of its own,
	# and a local address is reachable whatever interface it sits on.
	raddr=$NET.$BASE.1
	if ! err=$(ip link add "${PREFIX}srv" type dummy 2>&1); then
		if [[ $err == *"Unknown device type"* ]] && err=$(ip link add "${PREFIX}srv" type ifb 2>&1); then
			srvtype=ifb
			say "this kernel has no dummy interfaces: ${PREFIX}srv is an ifb device instead"
		else
			do_down >/dev/null 2>&1 || true
			refuse "cannot create the server interface: ip link add ${PREFIX}srv type dummy: $err"
		fi
	fi
	ip addr add "$raddr/32" dev "${PREFIX}srv"
	ip link set "${PREFIX}srv" up

	for ((i = 1; i <= HOSTS; i++)); do
		o=$((BASE + i)) ns=${PREFIX}h$i veth=${PREFIX}v$i
		haddr=$NET.$o.2
		if ! err=$(ip netns add "$ns" 2>&1); then
			# Typically no CAP_NET_ADMIN (an unprivileged container) or no
			# /run/netns to mount on: nothing to inspect, so clean up.
			do_down >/dev/null 2>&1 || true
			refuse "cannot create network namespace $ns: ip netns add $ns: $err"
		fi
		# The peer is made directly inside the namespace, named eth0 there.
		ip link add "$veth" type veth peer name eth0 netns "$ns"
		ip addr add "$NET.$o.1/24" dev "$veth"
		ip link set "$veth" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "$haddr/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" route add default via "$NET.$o.1"

		# A throwaway host key per host; ssh checks it via KNOWN_HOSTS.
		ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$DIR/ssh_host_ed25519_key.$i" </dev/null >/dev/null
		sshd_config "$i" "$haddr" >"$DIR/sshd_config.$i"
		"$SSHD" -t -f "$DIR/sshd_config.$i" || die "host $ns: sshd -t rejects $DIR/sshd_config.$i"
		# sshd daemonizes once listening; -E: its log goes to a file of ours.
		# ip netns exec gives it a mount namespace with a fresh /sys, where
		# the cgroup v2 hierarchy is not mounted: mounted there (in that
		# namespace only), agents can count their kernel work (loadgen's
		# -kernel-counts) as on a real host.
		# shellcheck disable=SC2016 # $0 and $@ are the inner shell's
		if ! out=$(ip netns exec "$ns" sh -c 'grep -q " - cgroup2 " /proc/self/mountinfo || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true; exec "$0" "$@"' \
			"$SSHD" -f "$DIR/sshd_config.$i" -E "$DIR/sshd.$i.log" 2>&1); then
			say "host $ns: sshd failed to start: $out; $DIR/sshd.$i.log ends:"
			tail -n 20 "$DIR/sshd.$i.log" >&2 2>/dev/null || true
			die "host $ns: sshd not started"
		fi
	done
	for ((i = 1; i <= HOSTS; i++)); do wait_ssh "$NET.$((BASE + i)).2" "$i"; done

	# known_hosts: old entries for these addresses (an earlier topology's keys)
	# first, else ssh would see two keys for one address and refuse.
	(umask 077 && mkdir -p -- "$(dirname -- "$KNOWN_HOSTS")")
	local addrs=()
	for ((i = 1; i <= HOSTS; i++)); do addrs+=("$NET.$((BASE + i)).2"); done
	forget_hosts "${addrs[@]}"
	for ((i = 1; i <= HOSTS; i++)); do
		read -r ktype key _ <"$DIR/ssh_host_ed25519_key.$i.pub"
		echo "$NET.$((BASE + i)).2 $ktype $key" >>"$KNOWN_HOSTS"
	done

	echo "server: listen on $raddr (interface ${PREFIX}srv, $srvtype), e.g. $raddr:7000"
	for ((i = 1; i <= HOSTS; i++)); do
		echo "host ${PREFIX}h$i: ssh root@$NET.$((BASE + i)).2"
	done
}

# ---- status --------------------------------------------------------------------
do_status() {
	local ns i f pid found=0 link
	[[ -f $MARKER ]] && { found=1; echo "state: $DIR ($(tr '\n' ' ' <"$MARKER"))"; }
	for link in $(our_links); do
		found=1
		echo "link $link: $(ip -4 -o addr show dev "$link" 2>/dev/null | awk '{printf "%s ", $4}')"
	done
	for ns in $(our_netns); do
		found=1
		i=${ns#"${PREFIX}h"}
		f=$DIR/sshd.$i.pid
		pid=$(cat "$f" 2>/dev/null || true)
		if is_our_sshd "$pid"; then pid="sshd pid $pid"; else pid="no sshd"; fi
		echo "host $ns: $(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{printf "%s ", $4}')($pid)"
	done
	((found)) || { echo "no topology with prefix $PREFIX"; return 1; }
}

case $cmd in
up)
	validate
	need_root
	find_sshd
	do_up
	;;
down)
	need_root
	read_state
	validate
	[[ -z $KNOWN_HOSTS ]] && KNOWN_HOSTS=$HOME/.ssh/known_hosts
	do_down
	;;
status)
	read_state
	validate
	do_status
	;;
esac
