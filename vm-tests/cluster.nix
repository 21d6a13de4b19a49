# A three-node cluster: `head` runs master, worker and API (no joinTokenFile: its worker and API
# units join its master with the token exo-join-token mints at boot); `w1` and `w2` run workers and
# join it with a token minted from head's master state directory; `client` reaches the API over the
# network with an API key. The cluster forms, one instance is placed across all three workers, and
# the client gets a completion.
{
  lib,
  exoMachine,
  pyHelpers,
  apiKey,
  haveModel,
  ...
}:
let
  worker = exoMachine {
    worker.enable = true;
    join = [ "head:52416" ];
    joinTokenFile = "/run/exo-secrets/join-token";
    openFirewall = true;
  };
in
{
  name = "exo-cluster";

  nodes = {
    head = exoMachine {
      master.enable = true;
      worker.enable = true;
      api.enable = true;
      api.host = "0.0.0.0";
      apiKeyFile = "/run/exo-secrets/api-keys";
      openFirewall = true;
    };
    w1 = worker;
    w2 = worker;
    client =
      { pkgs, ... }:
      {
        environment.systemPackages = [
          pkgs.curl
          pkgs.jq
        ];
      };
  };

  testScript = ''
    ${pyHelpers}
    auth = "-H 'Authorization: Bearer ${apiKey}'"
    base = "http://head:52415"

    head.wait_for_unit("exo.target")
    head.wait_until_succeeds("curl -sf http://127.0.0.1:52415/readyz")

    with subtest("head's own units joined its master with the minted token"):
        head.succeed("systemctl show -p Result --value exo-join-token | grep -qx success")
        head.wait_until_succeeds(
            f"curl -sf http://127.0.0.1:52415/api/v1/nodes {auth} | jq -e '[.nodes[] | select(.status == \"alive\")] | length == 3'",
            timeout=120,
        )

    with subtest("workers join with a token minted from the master's CA"):
        # Only a master issues worker tokens (head's API unit is not one); root reads its state.
        token = head.succeed(
            "exo cluster token --from-data-dir /var/lib/exo/master --role worker --ttl 10m"
        ).strip().splitlines()[0]
        assert token, "empty join token"
        for w in [w1, w2]:
            w.wait_for_unit("multi-user.target")
            w.succeed(f"install -m 0600 /dev/stdin /run/exo-secrets/join-token <<< '{token}'")
            w.succeed("systemctl restart exo-worker.service")
            w.wait_for_unit("exo-worker.service")

    with subtest("the cluster lists all nodes"):
        client.wait_until_succeeds(
            f"curl -sf {base}/api/v1/nodes {auth} | jq -e '[.nodes[] | select(.status == \"alive\" and (.roles | index(\"worker\")))] | length == 3'",
            timeout=120,
        )

    with subtest("the API refuses requests without a key"):
        client.fail(f"curl -sf {base}/api/v1/nodes")

    ${lib.optionalString haveModel ''
      with subtest("one instance is placed across the three workers"):
          models = json.loads(client.succeed(f"curl -sf {base}/v1/models {auth}"))
          model = [m["id"] for m in models["data"] if "stories260K" in m["id"]][0]
          request = json.dumps({"model": model, "min_nodes": 3})
          client.succeed(
              f"curl -sf -X POST {base}/api/v1/instances {auth} -H 'Content-Type: application/json' -d '{request}'"
          )
          client.wait_until_succeeds(
              f"curl -sf {base}/api/v1/instances {auth} | jq -e '.instances[0].stages | length == 3'",
              timeout=120,
          )
    ''}

    check_completion(client, base, auth)
  '';
}
