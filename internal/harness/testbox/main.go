// Command testbox is the real-node tests' container program, built into a
// tiny image by internal/image (the same code as the gpuslice image):
//
//	testbox pause         the pod sandbox: waits for SIGTERM or SIGINT,
//	                      reaping children as PID 1
//	testbox sleep         a workload container: the same wait
//	testbox devices PATH… one line per path: "PATH char MAJOR:MINOR",
//	                      "PATH other MODE" or "PATH missing"
//	testbox env NAME…     one line per variable: "NAME=value" or "NAME unset"
//	testbox gpu           a GPU workload (the stand-in vLLM, Ollama): holds
//	                      GPU memory on the stand-in NVML until SIGTERM
//	                      (see gpu.go)
//	testbox plex          the stand-in Plex (plextest) on its port; POST
//	                      ?on=true|false to plextest.TranscodeSwitchPath
//	                      starts or ends a hardware transcode
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbox pause|sleep|gpu|plex|devices PATH...|env NAME...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause", "sleep":
		wait()
	case "gpu":
		if err := gpuWorkload(); err != nil {
			fmt.Fprintf(os.Stderr, "testbox gpu: %v\n", err)
			os.Exit(1)
		}
	case "plex":
		if err := plex(); err != nil {
			fmt.Fprintf(os.Stderr, "testbox plex: %v\n", err)
			os.Exit(1)
		}
	case "devices":
		for _, p := range os.Args[2:] {
			fmt.Println(describe(p))
		}
	case "env":
		for _, n := range os.Args[2:] {
			if v, ok := os.LookupEnv(n); ok {
				fmt.Printf("%s=%s\n", n, v)
			} else {
				fmt.Printf("%s unset\n", n)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "testbox: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// wait returns on SIGTERM or SIGINT and reaps any child meanwhile.
func wait() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

func describe(p string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p + " missing"
		}
		return fmt.Sprintf("%s error %v", p, err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFCHR {
		return fmt.Sprintf("%s char %d:%d", p, major(st.Rdev), minor(st.Rdev))
	}
	return fmt.Sprintf("%s other %o", p, st.Mode)
}

// major and minor decode Linux's dev_t as glibc's gnu_dev_major/minor do.
func major(dev uint64) uint64 { return (dev>>8)&0xfff | (dev>>32)&^0xfff }
func minor(dev uint64) uint64 { return dev&0xff | (dev>>12)&^0xff }
