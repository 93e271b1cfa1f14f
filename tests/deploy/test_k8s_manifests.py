#!/usr/bin/python3
"""Checks deploy/k8s/*.yaml against the code, since no cluster runs here.

What it checks: every document parses (python3-yaml) and has apiVersion, kind and metadata.name;
every container image is one this repository builds (deploy/Dockerfile's pscope image); every
program a container runs is a binary the build makes, and every flag passed to psd and pstrain is
accepted by the real binaries (they are run with the manifest's arguments plus --help, which
parses everything before it); psd's --listen and --metrics-listen ports are the declared
containerPorts, which the Service targets and the probes use; the probe paths are answered by a
real psd started with --metrics-listen (200 from /healthz and /readyz); --data-dir is the
mount path of the volume claim template; the uid the pods run as is the image's; the workers'
and the evaluator's --shards lists psd-0..psd-(replicas-1) of the headless Service, in ordinal
order (the client places variables by hash modulo the shard count, so the order and count
matter); the PodDisruptionBudget and the Service select the StatefulSet's pods; every container
requests cpu and memory.

What it does not check (no cluster, no registry here): scheduling, DNS, volume provisioning,
probes as the kubelet runs them, image pulls, Job completion semantics.

Usage: test_k8s_manifests.py REPO_ROOT PSD_BIN PSTRAIN_BIN
"""
import glob
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import yaml

root, psd_bin, pstrain_bin = sys.argv[1:4]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


docs = []
for path in sorted(glob.glob(os.path.join(root, "deploy/k8s/*.yaml"))):
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d is None:
                continue
            name = d.get("metadata", {}).get("name")
            check(d.get("apiVersion") and d.get("kind") and name,
                  "%s: a document without apiVersion, kind or metadata.name" % path)
            docs.append((os.path.basename(path), d))
check(len(docs) >= 5, "expected a Service, StatefulSet, PodDisruptionBudget and two Jobs")


def find(kind, name=None):
    return [d for _, d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


# ---- the image: what deploy/Dockerfile builds ----
dockerfile = open(os.path.join(root, "deploy/Dockerfile")).read()
compose = yaml.safe_load(open(os.path.join(root, "deploy/docker-compose.yml")))
deploy_test = open(os.path.join(root, "scripts/test-deploy.sh")).read()
built_image = "pscope:latest"
check("-t %s" % built_image in deploy_test, "scripts/test-deploy.sh does not build %s" % built_image)
installed = set(re.findall(r"/build/[\w/]*/(\w+)(?=[\s\\])", dockerfile.split("install -m 0755", 1)[1].split("&&", 1)[0]))
check({"psd", "pstrain", "psctl"} <= installed, "the Dockerfile installs %s" % sorted(installed))
uid = re.search(r"useradd [^\n]*--uid (\d+)", dockerfile)
check(uid, "the Dockerfile's user has no fixed uid")
uid = int(uid.group(1)) if uid else None
data_dirs = set(re.findall(r"install -d [^\n]*", dockerfile))


def pod_specs():
    for kind in ("StatefulSet", "Job", "Deployment"):
        for d in find(kind):
            yield d, d["spec"]["template"]["spec"]


def argv_of(c):
    cmd = list(c.get("command", [])) + list(c.get("args", []))
    # `sh -c 'exec prog "$@" ...' prog ARGS...`: the program and its arguments.
    if cmd[:2] == ["sh", "-c"]:
        script = shlex.split(cmd[2])
        check(script[0] == "exec", "%s: the shell script should exec the program" % c["name"])
        extra = [a for a in script[2:] if a != '"$@"' and a != "$@"]
        prog = script[1]
        args = cmd[4:] + [a.replace('"', "") for a in extra]
        return [prog] + args
    return cmd


# ---- psd: StatefulSet, Service, PDB ----
sts = find("StatefulSet", "psd")
check(len(sts) == 1, "one StatefulSet named psd")
sts = sts[0]
svc = find("Service", sts["spec"]["serviceName"])
check(len(svc) == 1, "the StatefulSet's serviceName %s is a Service" % sts["spec"]["serviceName"])
svc = svc[0]
check(svc["spec"].get("clusterIP") == "None", "the psd Service is headless (clusterIP: None)")
pod_labels = sts["spec"]["template"]["metadata"]["labels"]
check(sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(),
      "the StatefulSet selector matches its pods")
check(svc["spec"]["selector"].items() <= pod_labels.items(), "the Service selects the psd pods")
pdb = find("PodDisruptionBudget")
check(len(pdb) == 1 and pdb[0]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(),
      "a PodDisruptionBudget selects the psd pods")
replicas = sts["spec"]["replicas"]
psd_c = sts["spec"]["template"]["spec"]["containers"][0]
psd_argv = argv_of(psd_c)
check(psd_argv[0] == "psd", "the StatefulSet runs psd")


def flag(argv, name):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


ports = {p["name"]: p["containerPort"] for p in psd_c["ports"]}
listen, mlisten = flag(psd_argv, "--listen"), flag(psd_argv, "--metrics-listen")
check(listen and int(listen.rsplit(":", 1)[1]) == ports.get("data"),
      "--listen %s is the data containerPort %s" % (listen, ports.get("data")))
check(mlisten and int(mlisten.rsplit(":", 1)[1]) == ports.get("metrics"),
      "--metrics-listen %s is the metrics containerPort %s" % (mlisten, ports.get("metrics")))
for sp in svc["spec"]["ports"]:
    tp = sp["targetPort"]
    check(tp in ports or tp in ports.values(), "Service port %s targets a declared port" % sp["name"])
    check(sp["port"] == ports.get(sp["name"]), "Service port %s is the container's" % sp["name"])
probe_paths = []
for probe in ("livenessProbe", "readinessProbe"):
    p = psd_c.get(probe)
    if check(p and "httpGet" in p, "psd has an HTTP %s" % probe):
        hp = p["httpGet"]
        check(hp["port"] in ("metrics", ports.get("metrics")), "%s uses the metrics port" % probe)
        probe_paths.append((probe, hp["path"]))
check(dict(probe_paths).get("livenessProbe") == "/healthz", "liveness probes /healthz")
check(dict(probe_paths).get("readinessProbe") == "/readyz", "readiness probes /readyz")
data_dir = flag(psd_argv, "--data-dir")
vct = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
mounts = {m["name"]: m["mountPath"] for m in psd_c.get("volumeMounts", [])}
check(any(mounts.get(n) == data_dir for n in vct),
      "--data-dir %s is the mount of a volume claim template %s" % (data_dir, sorted(vct)))
check(any(data_dir in d for d in data_dirs), "the image creates %s for the pscope user" % data_dir)
check(sts["metadata"]["name"] == "psd", "pods are named psd-N")

# ---- every pod and container ----
shard_list = ",".join("psd-%d.%s:%d" % (i, svc["metadata"]["name"], ports["data"]) for i in range(replicas))
for d, spec in pod_specs():
    sc = spec.get("securityContext", {})
    if sc.get("runAsNonRoot"):
        check(sc.get("runAsUser") == uid,
              "%s: runAsNonRoot needs the image's numeric uid %s (got %s)" % (d["metadata"]["name"], uid, sc.get("runAsUser")))
    for c in spec["containers"]:
        where = "%s/%s" % (d["metadata"]["name"], c["name"])
        check(c["image"] == built_image, "%s: image %s is not the one built here (%s)" % (where, c["image"], built_image))
        req = c.get("resources", {}).get("requests", {})
        check("cpu" in req and "memory" in req, "%s: requests cpu and memory" % where)
        argv = argv_of(c)
        check(argv[0] in installed, "%s: %s is not a binary the image installs" % (where, argv[0]))
        if argv[0] == "pstrain":
            check(flag(argv, "--shards") == shard_list,
                  "%s: --shards %s is not the shards in ordinal order (%s)" % (where, flag(argv, "--shards"), shard_list))
            if "--evaluator" not in argv:
                nw = flag(argv, "--num-workers")
                check(d["kind"] == "Job" and d["spec"].get("completionMode") == "Indexed"
                      and str(d["spec"]["completions"]) == nw,
                      "%s: --num-workers %s equals the Indexed Job's completions" % (where, nw))
                check(c["command"][:2] == ["sh", "-c"] and "$JOB_COMPLETION_INDEX" in c["command"][2],
                      "%s: the worker index is the Job's completion index" % where)
        # pstrain accepts every flag: the arguments then --help (getopt parses them in order).
        # psd's are checked by starting it with them, below.
        binary = {"pstrain": pstrain_bin}.get(argv[0])
        if binary:
            args = [a.replace("$JOB_COMPLETION_INDEX", "0") for a in argv[1:]]
            if argv[0] == "pstrain" and "--evaluator" not in args:
                args += ["--worker-index", "0"]
            r = subprocess.run([binary] + args + ["--help"], capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, "%s: %s rejects the manifest's arguments: %s" % (where, argv[0], r.stderr.strip()[:300]))

# ---- psd started with the manifest's arguments; the probe paths answered by it ----
# Only the addresses (to 127.0.0.1:0) and the data directory (to a temporary one) are replaced.
with tempfile.TemporaryDirectory() as tmp:
    mport_file = os.path.join(tmp, "mport")
    args = list(psd_argv[1:])
    for name, value in (("--listen", "127.0.0.1:0"), ("--metrics-listen", "127.0.0.1:0"),
                        ("--data-dir", os.path.join(tmp, "data"))):
        args[args.index(name) + 1] = value
    log = open(os.path.join(tmp, "psd.log"), "w+")
    p = subprocess.Popen([psd_bin] + args + ["--metrics-port-file", mport_file,
                          "--port-file", os.path.join(tmp, "port")], stderr=log)
    try:
        deadline = time.time() + 20
        while not os.path.exists(os.path.join(tmp, "port")) and time.time() < deadline:
            if p.poll() is not None:
                break
            time.sleep(0.05)
        log.seek(0)
        if not check(p.poll() is None, "psd refused the manifest's arguments: %s" % log.read()[-400:]):
            raise SystemExit("FAIL: " + "\nFAIL: ".join(failures))
        port = int(open(mport_file).read())
        for probe, path in probe_paths:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(("GET %s HTTP/1.1\r\nHost: k\r\n\r\n" % path).encode())
            resp = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
            s.close()
            check(resp.startswith(b"HTTP/1.1 200 "), "%s %s: psd answered %r" % (probe, path, resp[:40]))
    finally:
        p.terminate()
        p.wait(timeout=20)
    check(p.returncode == 0, "psd exited %s" % p.returncode)

# ---- compose: the same image and ports ----
check(compose["services"]["psd"]["image"].endswith("pscope:latest}"), "compose runs the same image")

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("k8s manifests: %d documents, %d psd shards, every image, flag, port and probe path checked" % (len(docs), replicas))
