# One machine with every role: the three units reach READY under the sandbox, /readyz answers, the
# journal carries each unit's identifier, and a model answers a completion.
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
