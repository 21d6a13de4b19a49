# Pieces shared by the VM tests.
{ pkgs, module }:
let
  inherit (pkgs) lib;

  # The stories260K model (Karpathy's llama2.c TinyStories checkpoint, MIT licence, converted to
  # GGUF) that the repository bundles for the README demo; it keeps the completion checks hermetic.
  modelFile = ../appliance/store/testdata/stories260K/stories260K-F32.gguf;
  haveModel = builtins.pathExists modelFile;
  modelDir =
    if haveModel then
      pkgs.runCommand "exo-test-models" { } ''
        mkdir -p $out
        cp ${modelFile} $out/stories260K-F32.gguf
      ''
    else
      null;

  apiKey = "exo-test-key-0123456789";
in
{
  inherit
    lib
    pkgs
    module
    haveModel
    modelDir
    apiKey
    ;

  # A NixOS machine running exo with the given services.exo settings.
  exoMachine =
    exo:
    { ... }:
    {
      imports = [ module ];
      services.exo = {
        enable = true;
        modelsDirs = [ "/var/lib/exo/models" ] ++ lib.optional haveModel "${modelDir}";
      }
      // exo;
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
        pkgs.netcat-openbsd
        pkgs.util-linux
      ];
      # Secrets are files outside the store, as in production; the tests write them at boot.
      systemd.tmpfiles.rules = [
        "d /run/exo-secrets 0700 root root -"
        "f+ /run/exo-secrets/api-keys 0600 root root - ${apiKey}"
      ];
      virtualisation.memorySize = 1024;
      virtualisation.cores = 2;
    };

  # Python helpers for the test scripts.
  pyHelpers = ''
    import json, time

    def readyz(machine, base="http://127.0.0.1:52415"):
        return json.loads(machine.succeed(f"curl -sf {base}/readyz"))

    def restarts(machine, unit):
        return int(machine.succeed(f"systemctl show -p NRestarts --value {unit}").strip())

    def main_pid(machine, unit):
        return int(machine.succeed(f"systemctl show -p MainPID --value {unit}").strip())

    HAVE_MODEL = ${if haveModel then "True" else "False"}

    def check_completion(machine, base="http://127.0.0.1:52415", auth=""):
        if not HAVE_MODEL:
            print("appliance/store/testdata/stories260K is absent: completion check left out")
            return
        models = json.loads(machine.succeed(f"curl -sf {base}/v1/models {auth}"))
        ids = [m["id"] for m in models["data"] if "stories260K" in m["id"]]
        assert ids, f"stories260K not listed: {models}"
        body = json.dumps({"model": ids[0], "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
        out = json.loads(machine.succeed(
            f"curl -sf {base}/v1/completions {auth} -H 'Content-Type: application/json' -d '{body}'"
        ))
        assert out["choices"][0]["text"].strip(), f"empty completion: {out}"
        return out

    def wait_restarted(machine, unit, before, timeout=120):
        machine.wait_until_succeeds(
            f"test $(systemctl show -p NRestarts --value {unit}) -gt {before} && systemctl is-active {unit}",
            timeout=timeout,
        )
  '';
}
