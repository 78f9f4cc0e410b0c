// Command masterminds-semver answers questions about Masterminds/semver v3 (the library Flux
// and Helm evaluate version ranges with) so Headwind's Python port can be checked against it.
//
// It reads one JSON object per line on stdin and writes one JSON object per line on stdout, in
// order. Versions are parsed with semver.NewVersion and ranges with semver.NewConstraint, as
// Flux does. An unparseable input answers {"error": "...", "what": "range"|"version"}.
//
//	{"op":"parse","version":V}                 -> {"version":"1.2.3-rc.1+b"} (Version.String)
//	{"op":"range","range":R}                   -> {"range":"..."} (Constraints.String)
//	{"op":"check","range":R,"version":V}       -> {"ok":bool}  (IncludePrerelease false)
//	{"op":"check_pre","range":R,"version":V}   -> {"ok":bool}  (IncludePrerelease true)
//	{"op":"max","range":R,"versions":[V,...]}  -> {"index":i,"version":"..."} the greatest
//	{"op":"max_pre",...}                          version that passes Check, by Version.Compare
//	                                              (the first of equals); index -1 if none
//	{"op":"check_all","range":R,"versions":[V,...]}
//	                                           -> {"ok":[bool,...],"ok_pre":[bool,...]}
//	                                              (check and check_pre of each version)
//	{"op":"compare","a":V,"b":V}               -> {"cmp":-1|0|1} (Version.Compare)
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/Masterminds/semver/v3"
)

type request struct {
	Op       string   `json:"op"`
	Range    string   `json:"range"`
	Version  string   `json:"version"`
	Versions []string `json:"versions"`
	A        string   `json:"a"`
	B        string   `json:"b"`
}

type reply map[string]any

func failed(what string, err error) reply {
	return reply{"error": err.Error(), "what": what}
}

func constraints(text string, includePrerelease bool) (*semver.Constraints, error) {
	c, err := semver.NewConstraint(text)
	if err != nil {
		return nil, err
	}
	c.IncludePrerelease = includePrerelease
	return c, nil
}

func answer(req request) (out reply) {
	defer func() {
		if r := recover(); r != nil {
			out = reply{"error": fmt.Sprintf("panic: %v", r), "what": "panic"}
		}
	}()
	switch req.Op {
	case "parse":
		v, err := semver.NewVersion(req.Version)
		if err != nil {
			return failed("version", err)
		}
		return reply{"version": v.String()}
	case "range":
		c, err := semver.NewConstraint(req.Range)
		if err != nil {
			return failed("range", err)
		}
		return reply{"range": c.String()}
	case "check", "check_pre":
		c, err := constraints(req.Range, req.Op == "check_pre")
		if err != nil {
			return failed("range", err)
		}
		v, err := semver.NewVersion(req.Version)
		if err != nil {
			return failed("version", err)
		}
		return reply{"ok": c.Check(v)}
	case "check_all":
		c, err := constraints(req.Range, false)
		if err != nil {
			return failed("range", err)
		}
		ok, okPre := make([]bool, len(req.Versions)), make([]bool, len(req.Versions))
		for i, text := range req.Versions {
			v, err := semver.NewVersion(text)
			if err != nil {
				return failed("version", err)
			}
			c.IncludePrerelease = false
			ok[i] = c.Check(v)
			c.IncludePrerelease = true
			okPre[i] = c.Check(v)
		}
		return reply{"ok": ok, "ok_pre": okPre}
	case "max", "max_pre":
		c, err := constraints(req.Range, req.Op == "max_pre")
		if err != nil {
			return failed("range", err)
		}
		index, best := -1, (*semver.Version)(nil)
		for i, text := range req.Versions {
			v, err := semver.NewVersion(text)
			if err != nil {
				return failed("version", err)
			}
			if c.Check(v) && (best == nil || v.Compare(best) > 0) {
				index, best = i, v
			}
		}
		if best == nil {
			return reply{"index": -1, "version": nil}
		}
		return reply{"index": index, "version": best.String()}
	case "compare":
		a, err := semver.NewVersion(req.A)
		if err != nil {
			return failed("version", err)
		}
		b, err := semver.NewVersion(req.B)
		if err != nil {
			return failed("version", err)
		}
		return reply{"cmp": a.Compare(b)}
	}
	return reply{"error": fmt.Sprintf("unknown op %q", req.Op), "what": "request"}
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	encoder := json.NewEncoder(out)
	encoder.SetEscapeHTML(false)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			var req request
			var resp reply
			if jsonErr := json.Unmarshal(line, &req); jsonErr != nil {
				resp = reply{"error": jsonErr.Error(), "what": "request"}
			} else {
				resp = answer(req)
			}
			if encErr := encoder.Encode(resp); encErr != nil {
				fmt.Fprintln(os.Stderr, encErr)
				os.Exit(1)
			}
			// Answer a batch in one write, but never sit on answers the caller waits for.
			if in.Buffered() == 0 {
				if flushErr := out.Flush(); flushErr != nil {
					os.Exit(1)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := out.Flush(); err != nil {
		os.Exit(1)
	}
}
