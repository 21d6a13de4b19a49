# One machine with every role and no joinTokenFile: the three units reach READY under the sandbox,
# the worker and API units join the master with the token exo-join-token mints at boot, /readyz
# answers, the journal carries each unit's identifier, and a model answers a completion.
{
  exoMachine,
  pyHelpers,
  ...
}:
{
  name = "exo-single-node";

  nodes.machine = exoMachine {
    master.enable = true;
    worker.enable = true;
    api.enable = true;
  };

  testScript = ''
    ${pyHelpers}

    machine.wait_for_unit("exo.target")

    with subtest("every role runs as its own notify unit"):
        for unit in ["exo-master", "exo-worker", "exo-api"]:
            machine.wait_for_unit(f"{unit}.service")
            props = machine.succeed(f"systemctl show -p Type,User,NRestarts {unit}")
            assert "Type=notify" in props and "User=exo" in props, props

    with subtest("exo-join-token mints the co-located units' token; they join the master"):
        props = machine.succeed("systemctl show -p Type,Result,SubState,User exo-join-token")
        for want in ["Type=oneshot", "Result=success", "SubState=exited", "User=exo"]:
            assert want in props, props
        assert machine.succeed("stat -c '%a %U' /run/exo-join-token/join-token").strip() == "600 exo"
        machine.wait_until_succeeds(
            "curl -sf http://127.0.0.1:52415/api/v1/nodes | jq -e '[.nodes[] | select(.status == \"alive\")] | length == 3'",
            timeout=120,
        )

    with subtest("/readyz reports every role of the API node ready"):
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:52415/readyz")
        r = readyz(machine)
        assert r["ready"], r

    with subtest("logs reach the journal under each unit's identifier"):
        for unit in ["exo-master", "exo-worker", "exo-api"]:
            machine.succeed(f"journalctl -t {unit} -o cat --no-pager | grep -q 'starting exo node'")

    with subtest("state directories belong to exo and are closed to others"):
        for role in ["master", "worker", "api"]:
            machine.succeed(f"test \"$(stat -c %U /var/lib/exo/{role})\" = exo")
            machine.fail(f"su -s /bin/sh nobody -c 'ls /var/lib/exo/{role}'")

    with subtest("the config file is the validated one the units read"):
        machine.succeed("exo config validate /etc/exo/config.yaml")

    check_completion(machine)
  '';
}
