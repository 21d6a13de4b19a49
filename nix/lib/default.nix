# Pure helpers for running exo under systemd. They use Nix builtins only (no nixpkgs), so the NixOS
# module, the flake and the checks on machines without NixOS (nix/check.sh, nix/nixtest, the QEMU
# conformance run) all derive units from the same code: what is tested is what is deployed.
#
# The entry point is `plan`: it takes the module's options as plain data and returns one description
# per systemd unit (argument list, ExecStart line, [Unit]/[Service]/[Install] sections, rendered unit
# text, listeners, credentials) plus the firewall openings.
let
  b = builtins;

  roles = [
    "master"
    "worker"
    "api"
  ];

  # Accelerator variants of the package; each selects the runtime libraries in the wrapper and the
  # device nodes the unit may open.
  accelerators = [
    "cpu"
    "cuda"
    "rocm"
    "opencl"
  ];

  defaultPorts = {
    api = 52415;
    gossip = 52416;
    transport = 52417;
    raft = 52418;
  };

  # Every role is its own process with its own gossip member, so roles sharing a host need distinct
  # gossip ports: the n-th enabled role (in the order master, worker, api) listens on base + 10*n.
  # A host with one role keeps the documented default.
  gossipStride = 10;

  # Keys of the config file that the units set per role through flags or credentials; the module
  # rejects them in `settings` because a file value would be silently overridden (or would put a
  # secret into the world-readable Nix store).
  unitOwnedKeys = {
    "roles" = "services.exo.<role>.enable";
    "data_dir" = "the units' StateDirectory (/var/lib/exo/<role>)";
    "node.name" = "services.exo.nodeName";
    "api.addr" = "services.exo.api.host and services.exo.api.port";
    "gossip.addr" = "services.exo.listenAddress and services.exo.<role>.gossipPort";
    "transport.addr" = "services.exo.listenAddress and services.exo.worker.transportPort";
    "raft.addr" = "services.exo.listenAddress and services.exo.master.raftPort";
    "cluster.join" = "services.exo.join";
    "cluster.token" = "services.exo.joinTokenFile (a secret must not enter the Nix store)";
    "cluster.token_file" = "services.exo.joinTokenFile";
    "api.keys" = "services.exo.apiKeyFile (a secret must not enter the Nix store)";
    "api.key_file" = "services.exo.apiKeyFile";
    "api.tls" = "services.exo.api.tls.enable";
    "api.tls_cert" = "services.exo.api.tls.certFile";
    "api.tls_key" = "services.exo.api.tls.keyFile";
    "models.dirs" = "services.exo.modelsDirs";
    "accelerator" = "services.exo.accelerator";
  };

  hasPrefix = p: s: b.substring 0 (b.stringLength p) s == p;

  indexOf =
    x: list:
    let
      go = i: if i >= b.length list then -1 else if b.elemAt list i == x then i else go (i + 1);
    in
    go 0;

  unique = b.foldl' (acc: x: if b.elem x acc then acc else acc ++ [ x ]) [ ];

  sortInts = b.sort b.lessThan;

  # host:port with IPv6 literals bracketed, as Go's net.SplitHostPort expects.
  hostPort =
    host: port:
    if b.match ".*:.*" host != null then "[${host}]:${toString port}" else "${host}:${toString port}";

  isLoopbackHost =
    host: host == "localhost" || host == "::1" || b.match "127\\.[0-9]+\\.[0-9]+\\.[0-9]+" host != null;

  # Where another unit on the same host reaches a listener bound to `host`.
  localDialHost =
    host:
    if
      b.elem host [
        ""
        "0.0.0.0"
      ]
    then
      "127.0.0.1"
    else if host == "::" then
      "::1"
    else
      host;

  enabledRoles = opts: b.filter (r: opts.roles.${r} or false) roles;

  gossipPort =
    opts: role:
    let
      override = (opts.gossipPorts or { }).${role} or null;
      base = (opts.ports or { }).gossip or defaultPorts.gossip;
      # A disabled role has no position; its (unused) port is the base.
      position = indexOf role (enabledRoles opts);
    in
    if override != null then
      override
    else if position < 0 then
      base
    else
      base + gossipStride * position;

  port = opts: name: (opts.ports or { }).${name} or defaultPorts.${name};

  apiHost = opts: (opts.api or { }).host or "127.0.0.1";
  apiPort = opts: (opts.api or { }).port or defaultPorts.api;
  listenAddress = opts: opts.listenAddress or "";

  # What one role listens on. `open` says whether a firewall opening makes sense: an API bound to
  # loopback is never reachable from outside, so opening its port would only widen the rule set.
  listeners =
    opts: role:
    let
      host = listenAddress opts;
      gossip = {
        name = "gossip";
        flag = "--gossip-addr";
        addr = hostPort host (gossipPort opts role);
        port = gossipPort opts role;
        tcp = true;
        udp = true;
        open = true;
      };
      perRole = {
        master = [
          {
            name = "raft";
            flag = "--raft-addr";
            addr = hostPort host (port opts "raft");
            port = port opts "raft";
            tcp = true;
            udp = false;
            open = true;
          }
        ];
        worker = [
          {
            name = "transport";
            flag = "--transport-addr";
            addr = hostPort host (port opts "transport");
            port = port opts "transport";
            # QUIC over UDP, with a TCP fallback where UDP is blocked.
            tcp = true;
            udp = true;
            open = true;
          }
        ];
        api = [
          {
            name = "api";
            flag = "--api-addr";
            addr = hostPort (apiHost opts) (apiPort opts);
            port = apiPort opts;
            tcp = true;
            udp = false;
            open = !isLoopbackHost (apiHost opts);
          }
        ];
      };
    in
    [ gossip ] ++ perRole.${role};

  firewall =
    opts:
    let
      all = b.concatLists (map (listeners opts) (enabledRoles opts));
      open = b.filter (l: l.open) all;
    in
    {
      tcp = sortInts (unique (map (l: l.port) (b.filter (l: l.tcp) open)));
      udp = sortInts (unique (map (l: l.port) (b.filter (l: l.udp) open)));
    };

  # The kernel hands out local ports of outgoing sockets from its ephemeral range (32768-60999 by
  # default), which holds exo's default ports: an mDNS query or a dial could own one at the moment
  # its unit binds it. Reserving every port the roles listen on (the loopback API too) keeps them
  # out of that choice; written in the syntax of net.ipv4.ip_local_reserved_ports.
  reservedPorts =
    opts:
    let
      all = b.concatLists (map (listeners opts) (enabledRoles opts));
    in
    b.concatStringsSep "," (map toString (sortInts (unique (map (l: l.port) all))));

  nodeName =
    opts: role:
    let
      base = opts.nodeName or null;
    in
    if base == null then
      null
    else if b.length (enabledRoles opts) > 1 then
      "${base}-${role}"
    else
      base;

  # Units on a master's host join that master. Without an operator-provided token
  # (services.exo.joinTokenFile) the oneshot unit exo-join-token mints one at boot from the cluster
  # CA in the master's data directory (`exo cluster token --from-data-dir`) into a runtime
  # directory, and the units next to the master load it as their join-token credential.
  colocatedRoles =
    opts: if opts.roles.master or false then b.filter (r: r != "master") (enabledRoles opts) else [ ];

  mintsToken = opts: colocatedRoles opts != [ ] && (opts.joinTokenFile or null) == null;

  tokenUnitName = "exo-join-token";
  tokenRuntimeDirectory = "exo-join-token";
  # Relative to the runtime directory root (/run for system units, %t).
  tokenRuntimePath = "${tokenRuntimeDirectory}/join-token";
  # The least privilege that covers every unit next to the master: a worker token also admits the
  # API role, an API token only that.
  tokenRole = opts: if b.elem "worker" (colocatedRoles opts) then "worker" else "api";
  # A unit keeps the certificate it was admitted with in its data directory, so the token only
  # matters for a first join. It is minted once per start of the token unit (once per boot, as a
  # rule); a year (exo issues at most 8784h) keeps it valid for a unit that first joins long after.
  # It grants the exo user nothing new: that user can read the CA key it is minted from.
  tokenTTL = "8760h";

  # A master given a token and no address to join (nor mDNS discovery to find one) has nothing to
  # join with it, and exo refuses to start it; such a master creates the cluster instead.
  masterJoins =
    opts: (opts.join or [ ]) != [ ] || b.elem "cluster.discovery" (opts.settingsKeys or [ ]);

  # Secrets reach the units through systemd credentials: the file is copied by systemd (as root)
  # into a private directory only the unit can read, so the secret never enters the Nix store and
  # need not be readable by the exo user. `id` is the name inside $CREDENTIALS_DIRECTORY.
  credentials =
    opts: role:
    let
      tls = (opts.api or { }).tls or { };
      entry = id: path: if path == null then [ ] else [ { inherit id path; } ];
      joinToken =
        if role == "master" && !(masterJoins opts) then
          [ ]
        else if mintsToken opts && role != "master" then
          # `runtime` names the file relative to the runtime root, for tests that stand in for /run.
          [
            {
              id = "join-token";
              path = "/run/${tokenRuntimePath}";
              runtime = tokenRuntimePath;
            }
          ]
        else
          entry "join-token" (opts.joinTokenFile or null);
    in
    joinToken
    ++ (
      if role == "api" then
        entry "api-keys" (opts.apiKeyFile or null)
        ++ (
          if tls.enable or false then
            entry "tls-cert" (tls.certFile or null) ++ entry "tls-key" (tls.keyFile or null)
          else
            [ ]
        )
      else
        [ ]
    );

  # A credential argument is kept structured until rendering: systemd expands it to the unit's
  # credentials directory (%d), a test substitutes its own directory. Paths under the state and
  # runtime roots are kept the same way (%S, %t).
  credentialArg = id: { credential = id; };
  stateArg = path: { state = path; };
  runtimeArg = path: { runtime = path; };

  # The ExecStart argument list. Only flags the role uses are passed, so `ps` shows what matters.
  argv =
    opts: role:
    let
      creds = map (c: c.id) (credentials opts role);
      hasCred = id: b.elem id creds;
      flag = name: value: [
        name
        (toString value)
      ];
      optFlag = name: value: if value == null then [ ] else flag name value;
      master = opts.roles.master or false;
      # Units on one host find each other through the local master's gossip listener.
      localJoin =
        if master && role != "master" then
          [ (hostPort (localDialHost (listenAddress opts)) (gossipPort opts "master")) ]
        else
          [ ];
      join = unique (localJoin ++ (opts.join or [ ]));
      tls = (opts.api or { }).tls or { };
      accel = opts.accelerator or null;
    in
    [
      opts.exe
      role
    ]
    ++ optFlag "--config" (opts.configFile or null)
    ++ optFlag "--node-name" (nodeName opts role)
    ++ b.concatLists (map (l: flag l.flag l.addr) (listeners opts role))
    ++ (if join == [ ] then [ ] else flag "--join" (b.concatStringsSep "," join))
    ++ (
      if hasCred "join-token" then
        [
          "--token-file"
          (credentialArg "join-token")
        ]
      else
        [ ]
    )
    ++ (
      if hasCred "api-keys" then
        [
          "--api-key-file"
          (credentialArg "api-keys")
        ]
      else
        [ ]
    )
    ++ (if role == "api" && (tls.enable or false) then [ "--tls" ] else [ ])
    ++ (
      if hasCred "tls-cert" then
        [
          "--tls-cert"
          (credentialArg "tls-cert")
          "--tls-key"
          (credentialArg "tls-key")
        ]
      else
        [ ]
    )
    ++ b.concatLists (map (flag "--models-dir") (opts.modelsDirs or [ ]))
    ++ (if accel == null then [ ] else flag "--accelerator" accel)
    ++ (opts.extraArgs or [ ]);

  # systemd splits ExecStart into words and expands % specifiers and $ variables everywhere, also
  # inside quotes; a JSON string literal is a valid quoted word, then % and $ are doubled so that a
  # path containing them reaches the program unchanged.
  escapeExecArg =
    arg:
    if b.isAttrs arg && arg ? credential then
      ''"%d/${arg.credential}"''
    else if b.isAttrs arg && arg ? state then
      ''"%S/${arg.state}"''
    else if b.isAttrs arg && arg ? runtime then
      ''"%t/${arg.runtime}"''
    else
      b.replaceStrings
        [
          "%"
          "$"
        ]
        [
          "%%"
          "$$"
        ]
        (b.toJSON (toString arg));

  execLine = args: b.concatStringsSep " " (map escapeExecArg args);

  # Device access per accelerator. The CPU variant sees only the pseudo devices systemd gives every
  # sandbox; a GPU variant may open exactly its vendor's device nodes, by major-number class (names
  # from /proc/devices), so new GPUs appear without a rebuild.
  nvidiaDevices = [
    "char-nvidiactl rw"
    "char-nvidia-frontend rw"
    "char-nvidia-uvm rw"
    "char-nvidia-caps rw"
  ];
  amdDevices = [
    "char-kfd rw"
    "char-drm rw"
  ];
  deviceAccess = {
    cpu = {
      PrivateDevices = true;
      DeviceAllow = [ ];
      SupplementaryGroups = [ ];
    };
    cuda = {
      PrivateDevices = false;
      DeviceAllow = nvidiaDevices;
      SupplementaryGroups = [ ];
    };
    rocm = {
      PrivateDevices = false;
      DeviceAllow = amdDevices;
      # /dev/kfd and /dev/dri/renderD* belong to these groups on NixOS and Debian.
      SupplementaryGroups = [
        "render"
        "video"
      ];
    };
    # OpenCL reaches Intel (render nodes), AMD (kfd + render nodes) and NVIDIA ICDs.
    opencl = {
      PrivateDevices = false;
      DeviceAllow = nvidiaDevices ++ amdDevices;
      SupplementaryGroups = [
        "render"
        "video"
      ];
    };
  };

  # The sandbox every exo unit runs in, modelled on nixpkgs' most hardened services.
  hardening =
    accelerator:
    let
      gpu = accelerator != "cpu";
      dev = deviceAccess.${accelerator} or (throw "exo: unknown accelerator ${accelerator}");
    in
    {
      CapabilityBoundingSet = [ "" ];
      AmbientCapabilities = [ "" ];
      NoNewPrivileges = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateMounts = true;
      PrivateDevices = dev.PrivateDevices;
      DevicePolicy = "closed";
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectClock = true;
      ProtectHostname = true;
      # /proc/meminfo and /proc/cpuinfo feed placement, so the whole of /proc stays visible, but
      # other users' processes do not.
      ProtectProc = "invisible";
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      # GPU runtimes compile kernels at run time (NVRTC, HIP RTC, PoCL) and need writable+executable
      # memory; Go code itself never does.
      MemoryDenyWriteExecute = !gpu;
      # Device nodes are reached through their owning groups, which a user namespace would hide.
      PrivateUsers = !gpu;
      RemoveIPC = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
      ];
      SystemCallErrorNumber = "EPERM";
      # Netlink reads interfaces, bonds and link speeds; UNIX carries sd_notify and the journal.
      RestrictAddressFamilies = [
        "AF_UNIX"
        "AF_INET"
        "AF_INET6"
        "AF_NETLINK"
      ];
      UMask = "0077";
    }
    // (if dev.DeviceAllow == [ ] then { } else { DeviceAllow = dev.DeviceAllow; })
    // (
      if dev.SupplementaryGroups == [ ] then
        { }
      else
        { SupplementaryGroups = dev.SupplementaryGroups; }
    );

  # Lifecycle: notify readiness, watchdog, exponential restart backoff.
  lifecycle = opts: {
    Type = "notify";
    NotifyAccess = "main";
    WatchdogSec = toString (opts.watchdogSec or 30);
    Restart = "on-failure";
    RestartSec = "1s";
    RestartSteps = 6;
    RestartMaxDelaySec = "1min";
    # Exit status 2 is a configuration error: a restart would fail the same way.
    RestartPreventExitStatus = 2;
    TimeoutStartSec = "5min";
    # The node drains in-flight requests for api.shutdown_timeout (30 s by default) on SIGTERM.
    TimeoutStopSec = toString (opts.stopTimeoutSec or 45);
    LimitNOFILE = 65536;
  };

  # Model directories the units must be able to write that StateDirectory does not cover. Store
  # paths are read-only model collections and stay as they are.
  extraModelDirs = opts:
    b.filter (d: !(hasPrefix "/var/lib/exo/" d) && !(hasPrefix "/nix/store/" d)) (opts.modelsDirs or [ ]);

  stateDirectories = role: [
    "exo/${role}"
    "exo/models"
  ];

  serviceConfig =
    opts: role:
    let
      accelerator = opts.accelerator or "cpu";
      readWrite = extraModelDirs opts;
      creds = credentials opts role;
      netns = opts.networkNamespace or null;
    in
    lifecycle opts
    // hardening accelerator
    // {
      ExecStart = execLine (argv opts role);
      User = opts.user or "exo";
      Group = opts.group or "exo";
      # The first entry is the node's data directory ($STATE_DIRECTORY's first element); models are
      # shared by the units of one host.
      StateDirectory = stateDirectories role;
      StateDirectoryMode = "0750";
      CacheDirectory = [ "exo/${role}" ];
      CacheDirectoryMode = "0750";
      SyslogIdentifier = "exo-${role}";
    }
    // (if readWrite == [ ] then { } else { ReadWritePaths = map (d: "-" + d) readWrite; })
    // (if creds == [ ] then { } else { LoadCredential = map (c: "${c.id}:${c.path}") creds; })
    // (if netns == null then { } else { NetworkNamespacePath = "/run/netns/${netns}"; });

  unitName = role: "exo-${role}";

  unitConfig =
    opts: role:
    let
      netns = opts.networkNamespace or null;
      afterMaster =
        if (opts.roles.master or false) && role != "master" then [ "${unitName "master"}.service" ] else [ ];
      # Wants, not Requires: should the token unit fail, the unit still starts, fails to load the
      # credential and restarts with backoff, each start pulling the token unit in again, so the
      # host recovers by itself once the master has its CA. Nor does the unit follow the master's
      # restarts (the token unit does, through Requires=).
      token = if mintsToken opts && role != "master" then [ "${tokenUnitName}.service" ] else [ ];
      netnsUnits = if netns == null then [ ] else [ "exo-netns.service" ];
    in
    {
      Description = "exo ${role} role";
      Documentation = [ "https://github.com/exo-nix/exo" ];
      Wants = [ "network-online.target" ] ++ token;
      After = [ "network-online.target" ] ++ afterMaster ++ token ++ netnsUnits;
      PartOf = [ "exo.target" ];
      # The backoff already spaces restarts out to a minute; a start limit would leave a cluster
      # member down for good after a long network outage.
      StartLimitIntervalSec = 0;
    }
    // (if netns == null then { } else { BindsTo = netnsUnits; });

  installConfig = {
    WantedBy = [ "exo.target" ];
  };

  # Renders sections the way NixOS does: a list becomes one line per element, booleans are
  # true/false.
  renderValue =
    v:
    if b.isBool v then
      (if v then "true" else "false")
    else
      toString v;

  renderSection =
    name: attrs:
    "[${name}]\n"
    + b.concatStringsSep "" (
      map (
        k:
        let
          v = attrs.${k};
        in
        if b.isList v then b.concatStringsSep "" (map (x: "${k}=${renderValue x}\n") v) else "${k}=${renderValue v}\n"
      ) (b.attrNames attrs)
    );

  toUnitText =
    sections:
    b.concatStringsSep "\n" (
      map (s: renderSection s sections.${s}) (
        b.filter (s: sections ? ${s}) [
          "Unit"
          "Service"
          "Install"
        ]
      )
    );

  # Every unit of the plan: the roles' and, where one is minted, the join token's.
  unitNames =
    opts: map unitName (enabledRoles opts) ++ (if mintsToken opts then [ tokenUnitName ] else [ ]);

  targetText =
    opts:
    toUnitText {
      Unit = {
        Description = "exo inference cluster node (all enabled roles)";
        Wants = map (n: "${n}.service") (unitNames opts);
      };
      Install.WantedBy = [ "multi-user.target" ];
    };

  unit =
    opts: role:
    let
      sections = {
        Unit = unitConfig opts role;
        Service = serviceConfig opts role;
        Install = installConfig;
      };
    in
    {
      inherit role sections;
      name = unitName role;
      argv = argv opts role;
      execStart = sections.Service.ExecStart;
      credentials = credentials opts role;
      listeners = listeners opts role;
      text = toUnitText sections;
    };

  # The oneshot that mints the join token of the units next to the master (see colocatedRoles).
  tokenArgv = opts: [
    opts.exe
    "cluster"
    "token"
    "--from-data-dir"
    (stateArg (b.head (stateDirectories "master")))
    "--role"
    (tokenRole opts)
    "--ttl"
    tokenTTL
    "--out"
    (runtimeArg tokenRuntimePath)
  ];

  tokenUnit =
    opts:
    let
      master = "${unitName "master"}.service";
      masterState = "/var/lib/${b.head (stateDirectories "master")}";
      argv = tokenArgv opts;
      sections = {
        Unit = {
          Description = "exo join token for the units next to this host's master";
          Documentation = [ "https://github.com/exo-nix/exo" ];
          # The CA exists once the master is READY (Type=notify). Requires= starts the master with
          # this unit; the master's own restarts (Restart=) leave the minted token in place.
          Requires = [ master ];
          After = [ master ];
          Before = map (r: "${unitName r}.service") (colocatedRoles opts);
          PartOf = [ "exo.target" ];
          # Retries for about a minute (RestartSec=5s), then fails with exo's reason (no CA in the
          # master's data directory) as the last line of its journal.
          StartLimitIntervalSec = 120;
          StartLimitBurst = 12;
        };
        # The sandbox of the role units (without devices whatever the accelerator), and less: no
        # network, and of /var/lib/exo only the master's state directory, read-only.
        Service = hardening "cpu" // {
          Type = "oneshot";
          # Active after the exit, so that the colocated units started later do not re-run it.
          RemainAfterExit = true;
          ExecStart = execLine argv;
          User = opts.user or "exo";
          Group = opts.group or "exo";
          # The colocated units load the token through LoadCredential= at every start, automatic
          # restarts included, so the file outlives this unit's stop.
          RuntimeDirectory = [ tokenRuntimeDirectory ];
          RuntimeDirectoryMode = "0700";
          RuntimeDirectoryPreserve = "yes";
          TemporaryFileSystem = [ "/var/lib/exo:ro" ];
          # "-": a missing directory is reported by exo ("read cluster CA ..."), not as a
          # namespace setup failure.
          BindReadOnlyPaths = [ "-${masterState}" ];
          PrivateNetwork = true;
          IPAddressDeny = "any";
          RestrictAddressFamilies = [ "AF_UNIX" ];
          Restart = "on-failure";
          RestartSec = "5s";
          # A usage error would fail the same way again.
          RestartPreventExitStatus = 2;
          TimeoutStartSec = "1min";
          SyslogIdentifier = tokenUnitName;
        };
        Install = installConfig;
      };
    in
    {
      inherit sections argv;
      role = null;
      name = tokenUnitName;
      execStart = sections.Service.ExecStart;
      credentials = [ ];
      listeners = [ ];
      text = toUnitText sections;
    };

  # Kubernetes objects that let K3s workloads reach this host's exo: a headless Service backed by an
  # EndpointSlice with the host's address (exo runs on the host, not in a pod), and a NetworkPolicy
  # that lets pods labelled exo.io/client=true reach exactly those ports (and DNS) and nothing else.
  k3sManifests =
    opts:
    let
      k = opts.k3s or { };
      ns = k.namespace or "exo";
      address = k.address or (throw "exo: services.exo.k3s.address is needed for the K3s manifests");
      ipv6 = b.match ".*:.*" address != null;
      all = b.concatLists (map (r: map (l: l // { role = r; }) (listeners opts r)) (enabledRoles opts));
      named = l: if l.name == "gossip" then "gossip-${l.role}" else l.name;
      portsOf =
        l:
        (if l.tcp then [ { name = "${named l}-tcp"; protocol = "TCP"; port = l.port; } ] else [ ])
        ++ (if l.udp then [ { name = "${named l}-udp"; protocol = "UDP"; port = l.port; } ] else [ ]);
      # The API on loopback is out of reach of pods.
      ports = b.concatLists (map portsOf (b.filter (l: l.open) all));
      labels = {
        "app.kubernetes.io/name" = "exo";
        "app.kubernetes.io/managed-by" = "nixos";
      };
    in
    [
      {
        apiVersion = "v1";
        kind = "Namespace";
        metadata = {
          name = ns;
          inherit labels;
        };
      }
      {
        apiVersion = "v1";
        kind = "Service";
        metadata = {
          name = "exo";
          namespace = ns;
          inherit labels;
        };
        spec = {
          clusterIP = "None";
          ports = map (p: {
            inherit (p) name protocol port;
            targetPort = p.port;
          }) ports;
        };
      }
      {
        apiVersion = "discovery.k8s.io/v1";
        kind = "EndpointSlice";
        metadata = {
          name = "exo-host";
          namespace = ns;
          labels = labels // {
            "kubernetes.io/service-name" = "exo";
            "endpointslice.kubernetes.io/managed-by" = "nixos";
          };
        };
        addressType = if ipv6 then "IPv6" else "IPv4";
        endpoints = [
          {
            addresses = [ address ];
            conditions.ready = true;
          }
        ];
        ports = map (p: { inherit (p) name protocol port; }) ports;
      }
      {
        apiVersion = "networking.k8s.io/v1";
        kind = "NetworkPolicy";
        metadata = {
          name = "exo-clients";
          namespace = ns;
          inherit labels;
        };
        spec = {
          podSelector.matchLabels."exo.io/client" = "true";
          policyTypes = [ "Egress" ];
          egress = [
            {
              to = [ { ipBlock.cidr = if ipv6 then "${address}/128" else "${address}/32"; } ];
              ports = map (p: { inherit (p) protocol port; }) ports;
            }
            {
              to = [ { namespaceSelector.matchLabels."kubernetes.io/metadata.name" = "kube-system"; } ];
              ports = [
                {
                  protocol = "UDP";
                  port = 53;
                }
                {
                  protocol = "TCP";
                  port = 53;
                }
              ];
            }
          ];
        };
      }
    ];

  # Problems with the options that no single option type can see. The module turns each into an
  # assertion; the tests evaluate them directly.
  problems =
    opts:
    let
      enabled = enabledRoles opts;
      gossipOf = map (gossipPort opts) enabled;
      all = b.concatLists (map (listeners opts) enabled);
      tcpPorts = map (l: l.port) (b.filter (l: l.tcp) all);
      udpPorts = map (l: l.port) (b.filter (l: l.udp) all);
      dup = list: b.filter (p: b.length (b.filter (q: q == p) list) > 1) (unique list);
      tls = (opts.api or { }).tls or { };
      settingsKeys = opts.settingsKeys or [ ];
      owned = b.filter (k: unitOwnedKeys ? ${k}) settingsKeys;
      check = cond: message: if cond then [ ] else [ message ];
    in
    check (enabled != [ ]) "services.exo: enable at least one of master.enable, worker.enable, api.enable"
    ++ check (
      dup tcpPorts == [ ] && dup udpPorts == [ ]
    ) "services.exo: two listeners share a port (${toString (dup (tcpPorts ++ udpPorts))}); give each role its own gossipPort"
    ++ check (b.length (unique gossipOf) == b.length gossipOf) "services.exo: roles on one host need distinct gossip ports"
    ++ check (
      !(b.elem "api" enabled) || isLoopbackHost (apiHost opts) || (opts.apiKeyFile or null) != null
    ) "services.exo: api.host ${apiHost opts} is beyond loopback, which exo refuses without API keys; set services.exo.apiKeyFile"
    ++ check (
      ((tls.certFile or null) == null) == ((tls.keyFile or null) == null)
    ) "services.exo: api.tls.certFile and api.tls.keyFile must be given together"
    ++ check (
      (tls.certFile or null) == null || (tls.enable or false)
    ) "services.exo: api.tls.certFile is set but api.tls.enable is false"
    ++ check (b.elem (opts.accelerator or "cpu") accelerators) "services.exo: accelerator must be one of ${b.concatStringsSep ", " accelerators}"
    ++ check (
      (opts.networkNamespace or null) == null || !(opts.openFirewall or false)
    ) "services.exo: openFirewall opens ports in the host's firewall, which does not filter the network namespace ${toString (opts.networkNamespace or "")}; configure the namespace's own firewall instead"
    ++ map (k: "services.exo.settings.${k} is set per unit by the module; use ${unitOwnedKeys.${k}} instead") owned;

  # Things that evaluate but will not work as the user likely expects; the module shows them as
  # warnings.
  warnings =
    opts:
    let
      colocated = colocatedRoles opts;
    in
    if colocated != [ ] && (opts.joinTokenFile or null) != null && !(masterJoins opts) then
      [
        "services.exo: the master on this host creates the cluster (no services.exo.join), yet ${b.concatStringsSep " and " (map unitName colocated)} join it with services.exo.joinTokenFile, which must then be a token of this very cluster; leave joinTokenFile unset and ${tokenUnitName}.service mints one at boot"
      ]
    else
      [ ];

  plan =
    opts:
    let
      enabled = enabledRoles opts;
    in
    {
      roles = enabled;
      units =
        b.listToAttrs (
          map (r: {
            name = unitName r;
            value = unit opts r;
          }) enabled
        )
        // (if mintsToken opts then { ${tokenUnitName} = tokenUnit opts; } else { });
      unitNames = unitNames opts;
      target = targetText opts;
      firewall = firewall opts;
      reservedPorts = reservedPorts opts;
      problems = problems opts;
      warnings = warnings opts;
    };
in
{
  inherit
    roles
    accelerators
    defaultPorts
    unitOwnedKeys
    hostPort
    isLoopbackHost
    enabledRoles
    gossipPort
    listeners
    firewall
    reservedPorts
    nodeName
    credentials
    colocatedRoles
    mintsToken
    masterJoins
    tokenUnitName
    tokenRuntimePath
    tokenRole
    tokenTTL
    tokenArgv
    tokenUnit
    unitNames
    argv
    escapeExecArg
    execLine
    deviceAccess
    hardening
    lifecycle
    stateDirectories
    extraModelDirs
    serviceConfig
    unitConfig
    installConfig
    unitName
    toUnitText
    unit
    k3sManifests
    problems
    warnings
    plan
    ;
}
