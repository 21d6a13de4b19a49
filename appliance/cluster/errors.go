package cluster

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/exo-nix/exo/appliance/cluster/state"
	"github.com/exo-nix/exo/appliance/placement"
)

// Error is a cluster error with the HTTP status the API answers it with.
type Error struct {
	Status int
	Msg    string
	// ShortBytes is set when placement failed for lack of memory.
	ShortBytes uint64
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is read by the API to pick the response status.
func (e *Error) HTTPStatus() int { return e.Status }

func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// ErrNotInCluster is returned by a node that has no cluster credentials.
var ErrNotInCluster = &Error{Status: http.StatusServiceUnavailable, Msg: "this node is not in a cluster (start it with --join and --token, or as a master)"}

// classify turns internal errors into API errors.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	var im *placement.InsufficientMemoryError
	switch {
	case errors.As(err, &im):
		return &Error{Status: http.StatusConflict, Msg: err.Error(), ShortBytes: im.ShortBytes()}
	case placement.IsUnsatisfiable(err):
		return &Error{Status: http.StatusConflict, Msg: err.Error()}
	case errors.Is(err, state.ErrNotFound), errors.Is(err, ErrModelNotFound):
		return &Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, state.ErrConflict):
		return &Error{Status: http.StatusConflict, Msg: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Msg: err.Error()}
}
