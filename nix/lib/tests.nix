# Unit tests of the pure helpers, evaluated without nixpkgs:
#   nix-instantiate --eval --strict --json nix/lib/tests.nix
# The result is the list of failing cases (empty when all pass), each with what was expected and
# what the helpers produced. nix/check.sh runs this; the flake runs it as checks.<system>.nix-lib.
let
  b = builtins;
  l = import ./.;

  exe = "/nix/store/00000000000000000000000000000000-exo/bin/exo";
  allRoles = {
    master = true;
    worker = true;
    api = true;
  };
  base = {
    inherit exe;
    nodeName = "n1";
    roles = allRoles;
  };
  planAll = l.plan base;
  planWorker = l.plan (
    base
    // {
      roles = {
        worker = true;
      };
    }
  );
  withSecretsOpts = base // {
    joinTokenFile = "/run/secrets/token";
    apiKeyFile = "/run/secrets/keys";
    api = {
      host = "0.0.0.0";
      tls = {
        enable = true;
        certFile = "/etc/exo/cert.pem";
        keyFile = "/run/secrets/key.pem";
      };
    };
  };
  withSecrets = l.plan withSecretsOpts;
  planWith = roles: l.plan (base // { roles = b.listToAttrs (map (r: { name = r; value = true; }) roles); });
  tokenUnit = planAll.units.exo-join-token;
  svc = p: name: p.units.${name}.sections.Service;
  argvOf = p: name: p.units.${name}.argv;
  hasFlag = f: args: b.elem f args;
  flagValue =
    f: args:
    let
      go =
        i:
        if i + 1 >= b.length args then
          null
        else if b.elemAt args i == f then
          b.elemAt args (i + 1)
        else
          go (i + 1);
    in
    go 0;
  # Substring test without regular expressions (the needles hold regex metacharacters).
  contains = needle: hay: b.replaceStrings [ needle ] [ "" ] hay != hay;
  hasProblem =
    pattern: p: b.any (m: b.match ".*${pattern}.*" m != null) p.problems;

  cases = {
    gossipPortsPerRole = {
      expected = [
        52416
        52426
        52436
      ];
      actual = map (r: l.gossipPort base r) l.roles;
    };
    disabledRoleGossipPortIsBase = {
      expected = [
        52416
        52416
        52426
      ];
      actual = map (r: l.gossipPort (base // { roles = { worker = true; api = true; }; }) r) l.roles;
    };
    singleRoleKeepsDefaultGossipPort = {
      expected = "52416";
      actual = b.elemAt (b.split ":" (flagValue "--gossip-addr" (argvOf planWorker "exo-worker"))) 2;
    };
    firewallAllRoles = {
      # The API on loopback gets no opening.
      expected = {
        tcp = [
          52416
          52417
          52418
          52426
          52436
        ];
        udp = [
          52416
          52417
          52426
          52436
        ];
      };
      actual = planAll.firewall;
    };
    firewallWorkerOnly = {
      expected = {
        tcp = [
          52416
          52417
        ];
        udp = [
          52416
          52417
        ];
      };
      actual = planWorker.firewall;
    };
    reservedPortsAllRoles = {
      # Every listener, the loopback API included: its bind can collide as well.
      expected = "52415,52416,52417,52418,52426,52436";
      actual = planAll.reservedPorts;
    };
    reservedPortsWorkerOnly = {
      expected = "52416,52417";
      actual = planWorker.reservedPorts;
    };
    firewallOpensPublicApi = {
      expected = true;
      actual = b.elem 52415 withSecrets.firewall.tcp && !(b.elem 52415 withSecrets.firewall.udp);
    };
    roleFlagsOnlyWhereUsed = {
      expected = {
        master = [
          true
          false
          false
        ];
        worker = [
          false
          true
          false
        ];
        api = [
          false
          false
          true
        ];
      };
      actual = b.mapAttrs (
        r: _:
        map (f: hasFlag f (argvOf planAll "exo-${r}")) [
          "--raft-addr"
          "--transport-addr"
          "--api-addr"
        ]
      ) allRoles;
    };
    localUnitsJoinLocalMaster = {
      expected = {
        master = null;
        worker = "127.0.0.1:52416";
        api = "127.0.0.1:52416";
      };
      actual = b.mapAttrs (r: _: flagValue "--join" (argvOf planAll "exo-${r}")) allRoles;
    };
    joinListMerged = {
      expected = "127.0.0.1:52416,10.0.0.9:52416";
      actual = flagValue "--join" (argvOf (l.plan (base // { join = [ "10.0.0.9:52416" ]; })) "exo-api");
    };
    ipv6ListenBracketed = {
      expected = "[fd00::5]:52418";
      actual = flagValue "--raft-addr" (argvOf (l.plan (base // { listenAddress = "fd00::5"; })) "exo-master");
    };
    nodeNamesPerRole = {
      expected = [
        "n1-master"
        "n1-worker"
        "n1-api"
        "n1"
      ];
      actual =
        map (r: flagValue "--node-name" (argvOf planAll "exo-${r}")) l.roles
        ++ [ (flagValue "--node-name" (argvOf planWorker "exo-worker")) ];
    };
    credentialsByRole = {
      # The master creates the cluster here (no join list): a token would make exo refuse it.
      expected = {
        master = [ ];
        worker = [ "join-token:/run/secrets/token" ];
        api = [
          "join-token:/run/secrets/token"
          "api-keys:/run/secrets/keys"
          "tls-cert:/etc/exo/cert.pem"
          "tls-key:/run/secrets/key.pem"
        ];
      };
      actual = b.mapAttrs (r: _: (svc withSecrets "exo-${r}").LoadCredential or [ ]) allRoles;
    };
    masterGetsTokenOnlyToJoin = {
      expected = [
        [ "join-token:/run/secrets/token" ]
        [ "join-token:/run/secrets/token" ]
        [ ]
      ];
      actual = map (o: (svc (l.plan (withSecretsOpts // o)) "exo-master").LoadCredential or [ ]) [
        { join = [ "10.0.0.9:52416" ]; }
        { settingsKeys = [ "cluster.discovery" ]; }
        { }
      ];
    };
    credentialArgsPointAtCredentialsDir = {
      expected = [
        ''"--token-file" "%d/join-token"''
        ''"--api-key-file" "%d/api-keys"''
        ''"--tls-cert" "%d/tls-cert" "--tls-key" "%d/tls-key"''
      ];
      actual =
        let
          line = withSecrets.units.exo-api.execStart;
        in
        b.filter (s: contains s line) [
          ''"--token-file" "%d/join-token"''
          ''"--api-key-file" "%d/api-keys"''
          ''"--tls-cert" "%d/tls-cert" "--tls-key" "%d/tls-key"''
        ];
    };
    execArgEscaping = {
      expected = ''"/a b/%%p/$$HOME" "say \"hi\"" "%d/x" "%S/exo/master" "%t/r/f"'';
      actual = l.execLine [
        "/a b/%p/$HOME"
        ''say "hi"''
        { credential = "x"; }
        { state = "exo/master"; }
        { runtime = "r/f"; }
      ];
    };
    cpuSandbox = {
      expected = {
        PrivateDevices = true;
        MemoryDenyWriteExecute = true;
        PrivateUsers = true;
        DeviceAllow = null;
        DevicePolicy = "closed";
        ProtectSystem = "strict";
        CapabilityBoundingSet = [ "" ];
      };
      actual = b.intersectAttrs {
        PrivateDevices = 0;
        MemoryDenyWriteExecute = 0;
        PrivateUsers = 0;
        DevicePolicy = 0;
        ProtectSystem = 0;
        CapabilityBoundingSet = 0;
      } (svc planAll "exo-worker") // {
        DeviceAllow = (svc planAll "exo-worker").DeviceAllow or null;
      };
    };
    gpuDevicesPerVendor = {
      expected = {
        cuda = [
          "char-nvidiactl rw"
          "char-nvidia-frontend rw"
          "char-nvidia-uvm rw"
          "char-nvidia-caps rw"
        ];
        rocm = [
          "char-kfd rw"
          "char-drm rw"
        ];
      };
      actual = b.listToAttrs (
        map (a: {
          name = a;
          value = (svc (l.plan (base // { accelerator = a; })) "exo-worker").DeviceAllow;
        }) [
          "cuda"
          "rocm"
        ]
      );
    };
    gpuVariantsRelaxJitAndUserNamespace = {
      expected = [
        false
        false
        false
      ];
      actual = map (
        a:
        let
          s = svc (l.plan (base // { accelerator = a; })) "exo-worker";
        in
        s.MemoryDenyWriteExecute || s.PrivateUsers || s.PrivateDevices
      ) [
        "cuda"
        "rocm"
        "opencl"
      ];
    };
    lifecycle = {
      expected = {
        Type = "notify";
        Restart = "on-failure";
        RestartSteps = 6;
        RestartPreventExitStatus = 2;
        SyslogIdentifier = "exo-master";
        StateDirectory = [
          "exo/master"
          "exo/models"
        ];
      };
      actual = b.intersectAttrs {
        Type = 0;
        Restart = 0;
        RestartSteps = 0;
        RestartPreventExitStatus = 0;
        SyslogIdentifier = 0;
        StateDirectory = 0;
      } (svc planAll "exo-master");
    };
    modelsOutsideStateAreWritable = {
      expected = [ "-/srv/models" ];
      actual =
        (svc (l.plan (base // { modelsDirs = [ "/srv/models" "/var/lib/exo/models" ]; })) "exo-worker")
        .ReadWritePaths;
    };
    unitTextListsRepeatKeys = {
      expected = true;
      actual =
        let
          t = planAll.units.exo-worker.text;
        in
        b.match ".*\nStateDirectory=exo/worker\nStateDirectory=exo/models\n.*" t != null
        && b.match ".*\nCapabilityBoundingSet=\n.*" t != null
        && b.match ".*\nPrivateDevices=true\n.*" t != null
        && b.match "\\[Unit].*\\[Service].*\\[Install]\nWantedBy=exo.target\n" t != null;
    };
    noProblemsForSaneOptions = {
      expected = [
        [ ]
        [ ]
        [ ]
      ];
      actual = map (p: p.problems) [
        planAll
        planWorker
        withSecrets
      ];
    };
    problems = {
      expected = [
        true
        true
        true
        true
        true
        true
        true
      ];
      actual = [
        (hasProblem "enable at least one" (l.plan (base // { roles = { }; })))
        (hasProblem "beyond loopback" (l.plan (base // { api.host = "0.0.0.0"; })))
        (hasProblem "share a port" (l.plan (base // { gossipPorts.api = 52418; })))
        (hasProblem "certFile and api.tls.keyFile" (
          l.plan (base // { api.tls = { enable = true; certFile = "/c"; }; })
        ))
        (hasProblem "network namespace" (
          l.plan (
            base
            // {
              networkNamespace = "exo";
              openFirewall = true;
            }
          )
        ))
        (hasProblem "settings.cluster.token is set per unit" (
          l.plan (base // { settingsKeys = [ "cluster.token" "log.level" ]; })
        ))
        (hasProblem "accelerator must be" (l.plan (base // { accelerator = "tpu"; })))
      ];
    };
    # Co-located units no longer need an operator token; one given to them while the local master
    # creates the cluster is warned about (it can only be a token of that new cluster).
    warnings = {
      expected = [
        0
        0
        1
        0
      ];
      actual = map (p: b.length p.warnings) [
        planAll
        planWorker
        withSecrets
        (l.plan (withSecretsOpts // { join = [ "10.0.0.9:52416" ]; }))
      ];
    };
    tokenUnitOnlyNextToMaster = {
      expected = [
        true
        true
        true
        false
        false
        false
      ];
      actual = map (p: p.units ? exo-join-token && b.elem "exo-join-token" p.unitNames) [
        planAll
        (planWith [ "master" "worker" ])
        (planWith [ "master" "api" ])
        (planWith [ "master" ])
        (planWith [ "worker" "api" ])
        withSecrets
      ];
    };
    tokenUnitArguments = {
      expected = {
        all = [
          exe
          "cluster"
          "token"
          "--from-data-dir"
          { state = "exo/master"; }
          "--role"
          "worker"
          "--ttl"
          "8760h"
          "--out"
          { runtime = "exo-join-token/join-token"; }
        ];
        apiOnlyRole = "api";
        execStart = ''"${exe}" "cluster" "token" "--from-data-dir" "%S/exo/master" "--role" "worker" "--ttl" "8760h" "--out" "%t/exo-join-token/join-token"'';
      };
      actual = {
        all = tokenUnit.argv;
        apiOnlyRole = flagValue "--role" (planWith [ "master" "api" ]).units.exo-join-token.argv;
        execStart = tokenUnit.execStart;
      };
    };
    tokenUnitOrdering = {
      expected = {
        requires = [ "exo-master.service" ];
        after = [ "exo-master.service" ];
        before = [
          "exo-worker.service"
          "exo-api.service"
        ];
        partOf = [ "exo.target" ];
        wantedBy = [ "exo.target" ];
        # The co-located units wait for it and pull it in.
        colocated = [
          true
          true
        ];
        masterIndependent = false;
        targetWants = true;
      };
      actual =
        let
          u = tokenUnit.sections;
          pulls =
            n:
            let
              s = planAll.units.${n}.sections.Unit;
            in
            b.elem "exo-join-token.service" s.After && b.elem "exo-join-token.service" s.Wants;
        in
        {
          requires = u.Unit.Requires;
          after = u.Unit.After;
          before = u.Unit.Before;
          partOf = u.Unit.PartOf;
          wantedBy = u.Install.WantedBy;
          colocated = map pulls [
            "exo-worker"
            "exo-api"
          ];
          masterIndependent = pulls "exo-master";
          targetWants = contains "Wants=exo-join-token.service\n" planAll.target;
        };
    };
    tokenCredentialWiring = {
      expected = {
        worker = [ "join-token:/run/exo-join-token/join-token" ];
        api = [ "join-token:/run/exo-join-token/join-token" ];
        master = null;
        tokenFlag = [
          true
          true
          false
        ];
        # Where the oneshot writes is where the credential is loaded from.
        sameFile = true;
      };
      actual = {
        worker = (svc planAll "exo-worker").LoadCredential;
        api = (svc planAll "exo-api").LoadCredential;
        master = (svc planAll "exo-master").LoadCredential or null;
        tokenFlag = map (n: contains ''"--token-file" "%d/join-token"'' planAll.units.${n}.execStart) [
          "exo-worker"
          "exo-api"
          "exo-master"
        ];
        sameFile =
          (b.head planAll.units.exo-worker.credentials).path == "/run/${(b.elemAt tokenUnit.argv 10).runtime}";
      };
    };
    tokenUnitSandbox = {
      expected = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "exo";
        RuntimeDirectory = [ "exo-join-token" ];
        RuntimeDirectoryMode = "0700";
        RuntimeDirectoryPreserve = "yes";
        BindReadOnlyPaths = [ "-/var/lib/exo/master" ];
        TemporaryFileSystem = [ "/var/lib/exo:ro" ];
        PrivateNetwork = true;
        PrivateDevices = true;
        ProtectSystem = "strict";
        Restart = "on-failure";
        # Nothing writable beyond its runtime directory, whatever the accelerator.
        stateDirectory = null;
        gpuDevices = null;
      };
      actual =
        b.intersectAttrs {
          Type = 0;
          RemainAfterExit = 0;
          User = 0;
          RuntimeDirectory = 0;
          RuntimeDirectoryMode = 0;
          RuntimeDirectoryPreserve = 0;
          BindReadOnlyPaths = 0;
          TemporaryFileSystem = 0;
          PrivateNetwork = 0;
          PrivateDevices = 0;
          ProtectSystem = 0;
          Restart = 0;
        } tokenUnit.sections.Service
        // {
          stateDirectory = tokenUnit.sections.Service.StateDirectory or null;
          gpuDevices =
            (l.plan (base // { accelerator = "cuda"; })).units.exo-join-token.sections.Service.DeviceAllow or null;
        };
    };
    networkNamespace = {
      expected = {
        path = "/run/netns/exo";
        bindsTo = [ "exo-netns.service" ];
      };
      actual =
        let
          p = l.plan (base // { networkNamespace = "exo"; });
        in
        {
          path = (svc p "exo-api").NetworkNamespacePath;
          bindsTo = p.units.exo-api.sections.Unit.BindsTo;
        };
    };
    k3sObjects = {
      expected = {
        kinds = [
          "Namespace"
          "Service"
          "EndpointSlice"
          "NetworkPolicy"
        ];
        clusterIP = "None";
        address = [ "10.0.0.5" ];
        # Loopback API excluded; gossip of every role, raft and transport.
        ports = [
          "gossip-master-tcp"
          "gossip-master-udp"
          "raft-tcp"
          "gossip-worker-tcp"
          "gossip-worker-udp"
          "transport-tcp"
          "transport-udp"
          "gossip-api-tcp"
          "gossip-api-udp"
        ];
        cidr = "10.0.0.5/32";
      };
      actual =
        let
          objs = l.k3sManifests (base // { k3s.address = "10.0.0.5"; });
          byKind = k: b.head (b.filter (o: o.kind == k) objs);
        in
        {
          kinds = map (o: o.kind) objs;
          clusterIP = (byKind "Service").spec.clusterIP;
          address = (b.head (byKind "EndpointSlice").endpoints).addresses;
          ports = map (p: p.name) (byKind "Service").spec.ports;
          cidr = (b.head (b.head (byKind "NetworkPolicy").spec.egress).to).ipBlock.cidr;
        };
    };
  };
in
b.filter (c: c != null) (
  map (
    name:
    let
      c = cases.${name};
    in
    if c.expected == c.actual then
      null
    else
      {
        inherit name;
        inherit (c) expected actual;
      }
  ) (b.attrNames cases)
)
