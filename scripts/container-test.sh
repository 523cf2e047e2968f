#!/usr/bin/env bash
# Container test: builds the image from the Dockerfile and proves it serves.
#
#   1. builds the image (non-root numeric USER, HEALTHCHECK and EXPOSE 8000 checked in its config);
#   2. runs it with a read-only root filesystem, all capabilities dropped, on a free port;
#   3. waits for /readyz and for the image's own HEALTHCHECK to pass;
#   4. posts the reference example (mean CE 0.479650), a malformed body (400 problem+json)
#      and a NaN (422);
#   5. checks the server process runs as UID 10001 and that the root filesystem refuses writes;
#   6. sends SIGTERM while a slow request is in flight: the request must still get its answer
#      and the container must exit 0;
#   6b. runs it with --memory 1g and default settings (the compose file's and the Deployment's limit)
#      and fires 24 concurrent 59.5 MB NPZ requests (735,000 × 10 float64 probabilities, each within every
#      default limit): every answer must be 200 or 503 and the container must still run (not OOM-killed);
#   7. starts docker-compose.yml (2 workers) and checks health, 2 worker processes and an answer;
#   8. runs the README's container commands, read from README.md (docker build, docker run with its
#      curl example, docker compose up --build: the built image keeps its HEALTHCHECK);
#   9. removes every container, compose stack and image it made (trap on exit).
#
# Engine: $CONTAINER_ENGINE if set; else docker if its daemon answers; else podman.
# Compose: $COMPOSE if set; else `docker compose` for docker, `podman-compose` for podman.
# Base image: --build-arg PYTHON_IMAGE=$PYTHON_IMAGE when PYTHON_IMAGE is set (the Dockerfile
# defaults to python:3.12-slim). On a machine without Docker, first run
#   eval "$(../shared/ci/container-env.sh)"
# (.ci/run does). With no engine at all this fails when CI=true and skips (exit 0) otherwise.
# KEEP_IMAGE=1 keeps the built image (tagged $IMAGE, default xent:container-test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'container-test: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

# --- engine -------------------------------------------------------------------------------
ENGINE=${CONTAINER_ENGINE:-}
if [ -z "$ENGINE" ]; then
  if command -v docker >/dev/null 2>&1 && timeout 15 docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v podman >/dev/null 2>&1; then
    ENGINE=podman
  fi
fi
if [ -z "$ENGINE" ] || ! command -v "$ENGINE" >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    fail "no container engine (no docker daemon answers, no podman): the image cannot be tested"
  fi
  log "SKIPPED: no container engine (no docker daemon answers, no podman)."
  log "         Run eval \"\$(../shared/ci/container-env.sh)\" first, or set CONTAINER_ENGINE."
  exit 0
fi
if [ -z "${COMPOSE:-}" ]; then
  if [ "$ENGINE" = docker ]; then
    COMPOSE="docker compose"
  elif command -v podman-compose >/dev/null 2>&1; then
    COMPOSE=podman-compose
  else
    fail "no compose tool for $ENGINE: set COMPOSE (podman-compose or docker compose)"
  fi
fi
read -r -a compose <<<"$COMPOSE"

IMAGE=${IMAGE:-xent:container-test}
run_id=$$
container=xent-ct-$run_id
project=xent-ct-$run_id
compose_up=false
readme_image=xent:readme-test-$run_id readme_container=xent-readme-$run_id readme_project=xent-readme-$run_id
readme_compose_up=false readme_run=

cleanup() {
  local status=$?
  set +e
  if [ "$compose_up" = true ]; then
    XENT_IMAGE=$IMAGE timeout 120 "${compose[@]}" -f docker-compose.yml -p "$project" down -t 30 >/dev/null 2>&1
  fi
  timeout 60 "$ENGINE" rm -f "$container" >/dev/null 2>&1
  if [ "$readme_compose_up" = true ]; then
    XENT_IMAGE=$readme_image-compose timeout 120 "${compose[@]}" -p "$readme_project" down -t 30 >/dev/null 2>&1
  fi
  timeout 60 "$ENGINE" rm -f "$readme_container" >/dev/null 2>&1
  [ -n "$readme_run" ] && kill "$readme_run" 2>/dev/null
  timeout 60 "$ENGINE" rmi -f "$readme_image" "$readme_image-compose" >/dev/null 2>&1
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    timeout 60 "$ENGINE" rmi -f "$IMAGE" >/dev/null 2>&1
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then log "PASSED"; else log "FAILED (exit $status)"; fi
  exit "$status"
}
work=$(mktemp -d)
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready URL SECONDS: until GET URL/readyz answers 200.
wait_ready() {
  local deadline=$((SECONDS + $2))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/readyz" || true)" = 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# healthy NAME SECONDS: the image's HEALTHCHECK passes (podman runs it on demand; docker on its timer).
healthy() {
  local deadline=$((SECONDS + $2))
  while :; do
    if [ "$ENGINE" = podman ]; then
      timeout 15 podman healthcheck run "$1" >/dev/null 2>&1 && return 0
    else
      [ "$(timeout 15 docker inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ] && return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# post URL BODY_FILE OUT: POST JSON; prints "status content-type".
post() {
  curl -s --max-time 30 -o "$3" -w '%{http_code} %{content_type}' -H 'content-type: application/json' -H 'Expect:' \
    --data-binary @"$2" "$1/v1/cross-entropy"
}

# check_reference FILE: the response holds mean.cross_entropy = -ln 0.619 = 0.479650.
check_reference() {
  python3 - "$1" <<'PY'
import json, math, sys
mean = json.load(open(sys.argv[1]))["mean"]["cross_entropy"]
sys.exit(0 if abs(mean - (-math.log(0.619))) < 1e-9 else f"mean.cross_entropy is {mean}, not 0.479650")
PY
}

# in_container NAME CODE: run Python inside the container, as its own user.
in_container() { timeout 30 "$ENGINE" exec "$1" python -c "$2"; }

started=$SECONDS
log "engine: $ENGINE ($("$ENGINE" --version)); compose: $COMPOSE"

# --- 1. build ------------------------------------------------------------------------------
build=("$ENGINE" build -t "$IMAGE")
[ "$ENGINE" = podman ] && build+=(--format docker) # keeps HEALTHCHECK in the image
[ -n "${PYTHON_IMAGE:-}" ] && build+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
log "building $IMAGE: ${build[*]} ."
timeout 600 "${build[@]}" . >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  fail "image build failed"
}
timeout 30 "$ENGINE" image inspect "$IMAGE" >"$work/image.json"
python3 - "$work/image.json" <<'PY' || fail "image configuration"
import json, sys
image = json.load(open(sys.argv[1]))[0]
config = image["Config"]
user = config.get("User") or ""
health = image.get("Healthcheck") or config.get("Healthcheck") or {}
problems = []
if not user.split(":")[0].isdigit() or int(user.split(":")[0]) == 0:
    problems.append(f"USER is {user!r}, not a numeric non-root UID")
if not health.get("Test"):
    problems.append("no HEALTHCHECK (podman needs --format docker)")
if "8000/tcp" not in (config.get("ExposedPorts") or {}):
    problems.append("8000/tcp is not exposed")
for problem in problems:
    print(f"container-test: {problem}", file=sys.stderr)
print(f"container-test: image size {image['Size'] / 1e6:.0f} MB, USER {user}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# --- 2. run: read-only root, no capabilities, a free port ---------------------------------
port=$(free_port)
url=http://127.0.0.1:$port
log "running $container on port $port (--read-only, --cap-drop ALL)"
timeout 60 "$ENGINE" run -d --name "$container" --read-only --cap-drop ALL --security-opt no-new-privileges \
  -p "127.0.0.1:$port:$port" -e XENT_PORT="$port" "$IMAGE" >/dev/null 2>"$work/run.err" || {
  cat "$work/run.err" >&2
  fail "container did not start"
}

# --- 3. health -------------------------------------------------------------------------------
wait_ready "$url" 60 || {
  timeout 15 "$ENGINE" logs "$container" >&2 || true
  fail "/readyz did not answer 200 within 60 s"
}
[ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$url/healthz")" = 200 ] || fail "/healthz is not 200"
healthy "$container" 60 || fail "the image's HEALTHCHECK did not pass within 60 s"
log "ready and healthy after $((SECONDS - started)) s; idle memory: $(timeout 30 "$ENGINE" stats --no-stream \
  --format '{{.MemUsage}}' "$container" 2>/dev/null || echo '?')"

# --- 4. answers ----------------------------------------------------------------------------
printf '%s' '{"labels":[1],"predictions":[[0.228,0.619,0.153]]}' >"$work/reference.json"
printf '%s' '{"labels":[1],' >"$work/malformed.json"
printf '%s' '{"labels":[1],"predictions":[[NaN,0.5,0.5]]}' >"$work/nan.json"
answer=$(post "$url" "$work/reference.json" "$work/out.json")
[ "${answer%% *}" = 200 ] || fail "reference example: HTTP $answer"
check_reference "$work/out.json" || fail "reference example: wrong answer"
answer=$(post "$url" "$work/malformed.json" "$work/out.json")
[ "$answer" = "400 application/problem+json" ] || fail "malformed body: got '$answer', want 400 application/problem+json"
answer=$(post "$url" "$work/nan.json" "$work/out.json")
[ "${answer%% *}" = 422 ] || fail "NaN in predictions: got '$answer', want 422"
log "reference 0.479650 (200), malformed body 400 problem+json, NaN 422"

# --- 5. non-root, read-only ----------------------------------------------------------------
uid=$(in_container "$container" 'import os; print(os.stat("/proc/1").st_uid)') || fail "cannot exec in container"
[ "$uid" != 0 ] || fail "the server process (PID 1) runs as root"
[ "$uid" = 10001 ] || fail "the server process runs as UID $uid, not 10001"
in_container "$container" '
import sys
try:
    open("/app/written-by-container-test", "w")
except OSError:
    sys.exit(0)
sys.exit("the root filesystem accepted a write")' || fail "root filesystem is not read-only"
log "server process runs as UID $uid; root filesystem is read-only"

# --- 6. SIGTERM with a request in flight ----------------------------------------------------
# ~26 kB of reference rows sent at 8 kB/s: the request is still being read when SIGTERM lands.
python3 -c '
import json
n = 1200
print(json.dumps({"labels": [1] * n, "predictions": [[0.228, 0.619, 0.153]] * n, "per_sample": False}))
' >"$work/slow.json"
curl -s --max-time 60 --limit-rate 8k -o "$work/slow.out" -w '%{http_code} %{time_total}' -H 'content-type: application/json' \
  -H 'Expect:' --data-binary @"$work/slow.json" "$url/v1/cross-entropy" >"$work/slow.code" &
slow=$!
sleep 1.5
timeout 30 "$ENGINE" kill --signal TERM "$container" >/dev/null || fail "could not send SIGTERM"
exit_code=$(timeout 60 "$ENGINE" wait "$container") || fail "container did not stop within 60 s of SIGTERM"
wait "$slow" || fail "the in-flight request failed (curl exit $?)"
read -r slow_code slow_seconds <"$work/slow.code" || true # no final newline
[ "$slow_code" = 200 ] || fail "the in-flight request got HTTP $slow_code, not 200"
python3 -c "import sys; sys.exit(float(sys.argv[1]) < 2)" "$slow_seconds" ||
  fail "the slow request took only $slow_seconds s: it was not in flight when SIGTERM was sent"
check_reference "$work/slow.out" || fail "the in-flight request got a wrong answer"
[ "$exit_code" = 0 ] || {
  timeout 15 "$ENGINE" logs "$container" >&2 || true
  fail "exit code after SIGTERM is $exit_code, not 0"
}
log "SIGTERM: the in-flight request finished (200 after ${slow_seconds} s) and the container exited 0"
timeout 60 "$ENGINE" rm -f "$container" >/dev/null 2>&1 || true

# --- 6b. memory at the shipped limit: 1 GiB, default settings, 24 large requests at once ----------------
# Without memory-aware admission (service/api/policy/admission.py) these OOM-kill the container (exit 137).
port=$(free_port)
url=http://127.0.0.1:$port
log "running $container with --memory 1g; 24 concurrent 59.5 MB NPZ requests"
timeout 60 "$ENGINE" run -d --name "$container" --memory 1g --memory-swap 1g --read-only --cap-drop ALL \
  -p "127.0.0.1:$port:$port" -e XENT_PORT="$port" "$IMAGE" >/dev/null 2>"$work/run.err" || {
  cat "$work/run.err" >&2
  fail "container with --memory 1g did not start"
}
wait_ready "$url" 60 || fail "--memory 1g: /readyz did not answer 200 within 60 s"
python3 - "$work/large.npz" <<'PY'
import array, random, sys, zipfile
# np.savez's layout without NumPy on the host: labels (uint8) and predictions (735,000 × 10 float64) as .npy members.
rows, classes = 735_000, 10
def npy(descr, shape, data):
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data
random.seed(1)
row = array.array("d", [0.1] * classes)  # a uniform row: every answer is ln 10 exactly
labels = bytes(random.randrange(classes) for _ in range(rows))
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
    archive.writestr("labels.npy", npy("|u1", (rows,), labels))
    archive.writestr("predictions.npy", npy("<f8", (rows, classes), row.tobytes() * rows))
PY
# curl sends "Expect: 100-continue" and waits for the server's go-ahead before the body: a request
# refused with 503 before its body is read gets its answer instead of a reset mid-upload.
for i in $(seq 1 24); do
  curl -s --max-time 180 --expect100-timeout 30 -o "$work/oom.$i.json" -w '%{http_code}\n' -X POST \
    -H 'content-type: application/x-npz' -T "$work/large.npz" "$url/v1/cross-entropy?per_sample=false" \
    >"$work/oom.$i.code" 2>/dev/null &
done
wait
cat "$work"/oom.*.code | tr '\n' ' ' >"$work/oom.out"
python3 - "$work" <<'PY' || fail "--memory 1g: a 200 answer is not n = 735,000, mean cross-entropy ln 10"
import glob, json, math, sys
for path in glob.glob(f"{sys.argv[1]}/oom.*.json"):
    answer = json.load(open(path))
    if "mean" in answer and (answer["n"] != 735_000 or abs(answer["mean"]["cross_entropy"] - math.log(10)) > 1e-9):
        sys.exit(f"{path}: {answer}")
PY
read -r -a statuses <"$work/oom.out" || true
state=$(timeout 30 "$ENGINE" inspect --format '{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}' "$container")
[ "$state" = "true 0 false" ] || fail "--memory 1g: after 24 large requests the container is '$state' (running, exit code, OOM-killed): $(cat "$work/oom.out")"
for status in "${statuses[@]}"; do
  [ "$status" = 200 ] || [ "$status" = 503 ] || fail "--memory 1g: an answer was '$status', not 200 or 503: $(cat "$work/oom.out")"
done
[ "${#statuses[@]}" = 24 ] || fail "--memory 1g: ${#statuses[@]} answers, not 24: $(cat "$work/oom.out")"
ok=$(grep -o 200 "$work/oom.out" | wc -l)
[ "$ok" -ge 1 ] || fail "--memory 1g: no request was answered 200"
wait_ready "$url" 10 || fail "--memory 1g: /readyz is not 200 after the large requests"
log "--memory 1g: 24 large requests: $ok × 200, $((24 - ok)) × 503; still running ($(timeout 30 "$ENGINE" stats \
  --no-stream --format '{{.MemUsage}}' "$container" 2>/dev/null || echo '?'))"
timeout 60 "$ENGINE" rm -f "$container" >/dev/null 2>&1 || true

# --- 7. docker-compose.yml -------------------------------------------------------------------
port=$(free_port)
url=http://127.0.0.1:$port
log "compose up ($project, XENT_WORKERS=2, port $port)"
compose_up=true
XENT_IMAGE=$IMAGE XENT_PORT=$port XENT_WORKERS=2 timeout 180 "${compose[@]}" -f docker-compose.yml -p "$project" \
  up -d --no-build >"$work/compose.log" 2>&1 || {
  tail -n 40 "$work/compose.log" >&2
  fail "compose up failed"
}
wait_ready "$url" 60 || fail "compose: /readyz did not answer 200 within 60 s"
service=$(timeout 30 "$ENGINE" ps -q --filter "label=com.docker.compose.project=$project" | head -n 1)
[ -n "$service" ] || fail "compose: no container labelled with project $project"
healthy "$service" 60 || fail "compose: the health check did not pass within 60 s"
workers=$(in_container "$service" '
import os, pathlib
procs = [p for p in pathlib.Path("/proc").glob("[0-9]*/cmdline") if p.parent.name != str(os.getpid())]
print(sum(b"multiprocessing-fork" in p.read_bytes() for p in procs))')
[ "$workers" = 2 ] || fail "compose: XENT_WORKERS=2 but $workers worker processes"
answer=$(post "$url" "$work/reference.json" "$work/out.json")
[ "${answer%% *}" = 200 ] || fail "compose: reference example: HTTP $answer"
check_reference "$work/out.json" || fail "compose: reference example: wrong answer"
log "compose: healthy, 2 workers, reference answered"

# --- 8. the README's container commands, as written --------------------------------------------
# The ```sh block of README.md that starts with `docker build` is read from the README (not copied here)
# and each of its lines is run with only these changes: the engine (with podman, what the README says to
# add: BUILDAH_FORMAT=docker, and podman-compose for `docker compose`), --build-arg PYTHON_IMAGE when
# PYTHON_IMAGE is set (the README says when), a throwaway image tag, a free port for 8000 (also passed as
# XENT_PORT: podman here shares the host's network), a --name for `docker run` (which runs in the
# foreground, as written, but in the background of this script) and a compose project of its own. The
# README's curl example that follows must answer, the image's HEALTHCHECK must pass, `docker stop` must
# end `docker run` with 0, and the image `compose up --build` builds must keep its HEALTHCHECK.

# readme_block PREFIX [next]: the README's ```sh block that starts with PREFIX (with "next": the block after it).
readme_block() {
  python3 - "$@" <<'PY'
import re, sys
blocks = re.findall(r"^```(\w*)\n(.*?)^```", open("README.md").read(), re.MULTILINE | re.DOTALL)
for i, (language, text) in enumerate(blocks):
    if language == "sh" and text.startswith(sys.argv[1]):
        if sys.argv[2:] == ["next"]:
            language, text = blocks[i + 1]
        sys.stdout.write(text)
        break
else:
    sys.exit(f"README.md has no sh block that starts with {sys.argv[1]!r}")
PY
}

readme_container_commands() {
  local commands curl_example tag port url line command status lines
  commands=$(readme_block "docker build ") || fail "README: no container commands"
  curl_example=$(readme_block "docker build " next) || fail "README: no curl example after the container commands"
  tag=$(sed -n 's/^docker build -t \([^ ]*\) .*/\1/p' <<<"$commands")
  [ -n "$tag" ] || fail "README: the container commands do not start with docker build -t TAG"
  [ "$ENGINE" = podman ] && export BUILDAH_FORMAT=docker # as the README says for podman
  port=$(free_port)
  url=http://127.0.0.1:$port
  mapfile -t lines <<<"$commands" # read first: the engines read stdin
  for line in "${lines[@]}"; do
    line=${line%%#*}
    line=${line//"$tag"/$readme_image}
    line=${line//127.0.0.1:8000:8000/127.0.0.1:$port:$port -e XENT_PORT=$port}
    case $line in
      "docker build "*)
        command="$ENGINE build${PYTHON_IMAGE:+ --build-arg PYTHON_IMAGE=$PYTHON_IMAGE}${line#docker build}"
        log "README: $command"
        timeout 600 bash -c "$command" >"$work/readme-build.log" 2>&1 || {
          tail -n 40 "$work/readme-build.log" >&2
          fail "README: $command failed"
        }
        ;;
      "docker run "*)
        command="$ENGINE run --name $readme_container${line#docker run}"
        log "README: $command"
        bash -c "$command" </dev/null >"$work/readme-run.log" 2>&1 &
        readme_run=$!
        wait_ready "$url" 60 || {
          cat "$work/readme-run.log" >&2
          fail "README: docker run: /readyz did not answer 200 within 60 s"
        }
        bash -c "${curl_example//localhost:8000/localhost:$port}" >"$work/readme-answer.json" ||
          fail "README: the curl example failed"
        check_reference "$work/readme-answer.json" || fail "README: the curl example got a wrong answer"
        healthy "$readme_container" 60 || fail "README: docker run: the image's HEALTHCHECK did not pass within 60 s"
        timeout 60 "$ENGINE" stop -t 30 "$readme_container" >/dev/null || fail "README: docker stop failed"
        status=0
        wait "$readme_run" || status=$?
        [ "$status" = 0 ] || fail "README: docker run ended with $status after docker stop, not 0"
        log "README: docker run answered the curl example, was healthy and ended with 0 on docker stop"
        ;;
      "docker compose "*)
        command="${compose[*]} -p $readme_project${line#docker compose}"
        log "README: $command"
        readme_compose_up=true
        XENT_IMAGE=$readme_image-compose XENT_PORT=$port timeout 600 bash -c "$command" >"$work/readme-compose.log" 2>&1 || {
          tail -n 40 "$work/readme-compose.log" >&2
          fail "README: $command failed"
        }
        timeout 30 "$ENGINE" image inspect "$readme_image-compose" >"$work/readme-image.json"
        python3 - "$work/readme-image.json" <<'PY' || fail "README: the image compose up --build built has no HEALTHCHECK"
import json, sys
image = json.load(open(sys.argv[1]))[0]
sys.exit(0 if (image.get("Healthcheck") or image["Config"].get("Healthcheck") or {}).get("Test") else 1)
PY
        wait_ready "$url" 60 || fail "README: compose: /readyz did not answer 200 within 60 s"
        bash -c "${curl_example//localhost:8000/localhost:$port}" >"$work/readme-answer.json" ||
          fail "README: compose: the curl example failed"
        check_reference "$work/readme-answer.json" || fail "README: compose: the curl example got a wrong answer"
        XENT_IMAGE=$readme_image-compose timeout 120 "${compose[@]}" -p "$readme_project" down -t 30 >/dev/null 2>&1
        readme_compose_up=false
        log "README: compose up --build kept the HEALTHCHECK in the image and answered the curl example"
        ;;
      *) fail "README: a container command this script does not know how to run: $line" ;;
    esac
  done
}
readme_container_commands
log "done in $((SECONDS - started)) s"
