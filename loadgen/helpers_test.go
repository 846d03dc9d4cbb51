package loadgen

import "os"

func runtimePID() int { return os.Getpid() }
