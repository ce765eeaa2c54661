#!/usr/bin/env bash
# install.sh - install qwen-edge as a systemd service (idempotent).
#
#   sudo systemd/install.sh [--prefix DIR] [--dry-run] [--uninstall] [--jetson|--cpu-only]
#                           [--source DIR|--package SPEC] [--no-enable] [--python PY]
#
# Creates the system user `qwen-edge`, /opt/qwen-edge/venv with qwen-edge installed,
# /etc/qwen-edge/{config.toml,qwen-edge.env} (kept if they exist), the unit
# /etc/systemd/system/qwen-edge.service plus one drop-in, then enables and starts it.
# --prefix DIR puts every path under DIR (for packaging and tests; user creation and
# systemctl are skipped unless the prefix is /). --dry-run prints what it would do.
set -euo pipefail

PREFIX=/
DRY=0
UNINSTALL=0
VARIANT=cpu-only
SOURCE=""
PACKAGE="qwen-edge"
ENABLE=1
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --jetson) VARIANT=jetson; shift ;;
    --cpu-only) VARIANT=cpu-only; shift ;;
    --source) SOURCE=${2:?--source needs a directory}; shift 2 ;;
    --package) PACKAGE=${2:?--package needs a pip requirement}; shift 2 ;;
    --no-enable) ENABLE=0; shift ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option '$1'" >&2; usage 2 ;;
  esac
done

PREFIX=${PREFIX%/}
ROOT_INSTALL=0
[ -z "$PREFIX" ] && ROOT_INSTALL=1
P() { echo "${PREFIX}$1"; }   # a system path under the prefix

ETC=$(P /etc/qwen-edge)
OPT=$(P /opt/qwen-edge)
UNIT_DIR=$(P /etc/systemd/system)
UNIT="$UNIT_DIR/qwen-edge.service"
DROPIN_DIR="$UNIT_DIR/qwen-edge.service.d"
STATE=$(P /var/lib/qwen-edge)

run() {  # run a command, or print it in --dry-run
  if [ "$DRY" = 1 ]; then printf 'would run:'; printf ' %q' "$@"; echo; else "$@"; fi
}
write_file() {  # write_file MODE PATH < content; keeps an existing file when KEEP=1
  local mode=$1 path=$2
  if [ "${KEEP:-0}" = 1 ] && [ -e "$path" ]; then
    say "keeping existing $path"; cat >/dev/null; return
  fi
  if [ "$DRY" = 1 ]; then say "would write $path (mode $mode)"; cat >/dev/null; return; fi
  mkdir -p "$(dirname "$path")"
  local tmp; tmp=$(mktemp "$(dirname "$path")/.qe.XXXXXX")
  cat >"$tmp"; chmod "$mode" "$tmp"; mv -f "$tmp" "$path"
  say "wrote $path"
}

# ---- prerequisites --------------------------------------------------------------------------
if [ "$ROOT_INSTALL" = 1 ] && [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "installing into / needs root (run with sudo), or use --prefix DIR / --dry-run"
fi
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed ($2)"; }
if [ "$UNINSTALL" = 0 ]; then
  need "$PYTHON" "install Python 3.11+ (apt-get install python3 python3-venv)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); qwen-edge needs Python 3.11 or newer"
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PYTHON lacks venv/ensurepip (apt-get install python3-venv)"
  need systemctl "qwen-edge runs as a systemd service"
  if [ "$ROOT_INSTALL" = 1 ]; then
    need useradd "apt-get install passwd"
    if [ -z "$SOURCE" ] && [ "$PACKAGE" = "qwen-edge" ] && [ -f "$HERE/../pyproject.toml" ]; then
      SOURCE=$(cd "$HERE/.." && pwd)
    fi
  fi
  [ -f "$HERE/qwen-edge.service" ] || die "run install.sh from the qwen-edge source tree (systemd/ is missing files)"
  [ -f "$HERE/$VARIANT.conf" ] || die "drop-in $VARIANT.conf not found next to install.sh"
fi

# ---- uninstall --------------------------------------------------------------------------------
if [ "$UNINSTALL" = 1 ]; then
  if [ "$ROOT_INSTALL" = 1 ] && command -v systemctl >/dev/null; then
    run systemctl disable --now qwen-edge.service || true
  elif command -v systemctl >/dev/null; then
    run systemctl --root="$PREFIX" disable qwen-edge.service || true
  fi
  run rm -rf "$UNIT" "$DROPIN_DIR" "$OPT"
  [ "$ROOT_INSTALL" = 1 ] && run systemctl daemon-reload || true
  say "removed the unit and $OPT; kept $ETC (config), $STATE (models) and the qwen-edge user"
  exit 0
fi

# ---- user and directories ------------------------------------------------------------------------
if [ "$ROOT_INSTALL" = 1 ]; then
  if ! getent group qwen-edge >/dev/null; then run groupadd --system qwen-edge; fi
  if ! id -u qwen-edge >/dev/null 2>&1; then
    run useradd --system --gid qwen-edge --home-dir /var/lib/qwen-edge --no-create-home \
      --shell /usr/sbin/nologin --comment "qwen-edge image server" qwen-edge
  fi
fi
run mkdir -p "$ETC" "$OPT" "$STATE/models"

# ---- virtualenv with qwen-edge ------------------------------------------------------------------------
if [ -x "$OPT/venv/bin/python" ]; then say "reusing $OPT/venv"; else run "$PYTHON" -m venv "$OPT/venv"; fi
if [ -n "$SOURCE" ]; then
  run "$OPT/venv/bin/pip" install --quiet --upgrade "$SOURCE"
else
  run "$OPT/venv/bin/pip" install --quiet --upgrade "$PACKAGE"
fi

# ---- config and environment (kept when present) -------------------------------------------------------
KEEP=1 write_file 0640 "$ETC/config.toml" <"$HERE/config.toml.example"
KEEP=1 write_file 0640 "$ETC/qwen-edge.env" <<'EOF'
# Environment for qwen-edge.service (EnvironmentFile=-/etc/qwen-edge/qwen-edge.env).
# Threads for the engine (default: all online CPUs); physical cores are best.
#ENG_THREADS=6
# Force a kernel ISA for triage: scalar | avx2 | avx512 | neon (default: best supported)
#ENG_ISA=
# Any config key can be set here too, e.g.:
#QWEN_EDGE_MODEL=/var/lib/qwen-edge/models/Qwen-Image
#QWEN_EDGE_LORA=/var/lib/qwen-edge/models/Qwen-Image-Lightning-8steps-V2.0.safetensors
EOF
if [ "$ROOT_INSTALL" = 1 ]; then
  run chown -R root:qwen-edge "$ETC"
  run chown -R qwen-edge:qwen-edge "$STATE"
fi

# ---- unit ----------------------------------------------------------------------------------------------
write_file 0644 "$UNIT" <"$HERE/qwen-edge.service"
write_file 0644 "$DROPIN_DIR/$VARIANT.conf" <"$HERE/$VARIANT.conf"
other=jetson; [ "$VARIANT" = jetson ] && other=cpu-only
[ -e "$DROPIN_DIR/$other.conf" ] && run rm -f "$DROPIN_DIR/$other.conf"

if [ "$ROOT_INSTALL" = 1 ]; then
  run systemctl daemon-reload
  if [ "$ENABLE" = 1 ]; then run systemctl enable --now qwen-edge.service; fi
  say "done: systemctl status qwen-edge; logs: journalctl -u qwen-edge -f"
else
  if [ "$ENABLE" = 1 ]; then run systemctl --root="$PREFIX" enable qwen-edge.service; fi
  say "done (prefix $PREFIX): nothing was started"
fi
