package main

import (
	"embed"
	"io/fs"
)

// dist is the dashboard built by `npm run build` in frontend/. The .keep placeholder lets the
// binary compile before the first frontend build; the server then says the dashboard is missing.
//
//go:embed all:frontend/dist
var dist embed.FS

// dashboard returns the built frontend as the tree the API serves at /, or nil when it has not
// been built.
func dashboard() fs.FS {
	sub, err := fs.Sub(dist, "frontend/dist")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(sub, "index.html"); err != nil {
		return nil
	}
	return sub
}
