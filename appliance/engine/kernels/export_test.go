package kernels

// RaceEnabled lets the external fixture tests shorten their work under the race detector.
const RaceEnabled = raceEnabled
