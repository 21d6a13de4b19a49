# The web dashboard (frontend/), built from source. importNpmLock fetches every package named in
# package-lock.json by its recorded integrity hash, so there is no separate npm dependency hash to
# keep in step with the lock file.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs_22,
  version ? "0.0.0-dev",
}:
let
  root = ../frontend;
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/package.json")
      (root + "/package-lock.json")
      (root + "/.npmrc")
      (root + "/index.html")
      (root + "/svelte.config.js")
      (root + "/tsconfig.json")
      (root + "/vite.config.ts")
      (root + "/eslint.config.js")
      (root + "/src")
    ];
  };
in
buildNpmPackage {
  pname = "exo-dashboard";
  inherit version src;
  nodejs = nodejs_22;

  npmDeps = importNpmLock { npmRoot = src; };
  npmConfigHook = importNpmLock.npmConfigHook;

  npmBuildScript = "build";

  # The dashboard's unit tests (Vitest) run with the build; type checking and lint stay in `make test`.
  doCheck = true;
  checkPhase = ''
    runHook preCheck
    npm test
    runHook postCheck
  '';

  installPhase = ''
    runHook preInstall
    cp -r dist "$out"
    runHook postInstall
  '';

  meta = {
    description = "Web dashboard of exo, embedded into the exo binary";
    platforms = lib.platforms.all;
  };
}
