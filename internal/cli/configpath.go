package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ispbalance/ispbalance/internal/detect"
)

// Where the configuration path came from.
const (
	configFromFlag   = "-c"
	configFromEnv    = "$" + ConfigEnv
	configFromLayout = "layout"
)

// missingConfigError explains a configuration file that does not exist;
// it unwraps to the read error, so callers still see fs.ErrNotExist.
type missingConfigError struct {
	msg string
	err error
}

func (e *missingConfigError) Error() string { return e.msg }
func (e *missingConfigError) Unwrap() error { return e.err }

// explainMissingConfig turns "no such file" for the configuration into a
// message that says where it was looked for and how to name another; any
// other error is returned as it is. root is --root's directory.
func explainMissingConfig(err error, path, from, root string) error {
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != path || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var msg string
	switch from {
	case configFromFlag:
		msg = fmt.Sprintf("configuration file %s (given with -c) does not exist", path)
	case configFromEnv:
		msg = fmt.Sprintf("configuration file %s (from %s) does not exist", path, configFromEnv)
	default:
		places := detect.ConfigPlaces(root)
		msg = fmt.Sprintf("no configuration file: %s does not exist (the places are %s, and the first whose directory exists is used)",
			path, strings.Join(places, ", "))
		for _, p := range places {
			if p == path {
				continue
			}
			if _, err := os.Stat(p); err == nil {
				msg += fmt.Sprintf("; %s exists: name it with -c %s", p, p)
				break
			}
		}
	}
	msg += fmt.Sprintf("; give the file with -c FILE or %s=FILE", ConfigEnv)
	return &missingConfigError{msg: msg, err: err}
}
