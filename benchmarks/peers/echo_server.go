// The Go peer of the peer comparison (benchmarks/peers): an idiomatic Go echo server watching its connections
// the way Go services do. One goroutine per connection; a read deadline pushed forward before every read is
// the idle reaper; the runtime's TCP keepalive, tuned like tether's, is the kernel probe; TCP_NODELAY is Go's
// default. It prints "port N" once it listens and echoes every newline-terminated line as it arrives.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"
)

const (
	idleTimeout   = time.Hour         // tether's idle_reaper{.read_idle = 1h} in the same benchmark
	keepAliveIdle = 600 * time.Second // tether's tcp_keepalive{.idle = 600s}
)

func serve(conn *net.TCPConn) {
	defer conn.Close()
	conn.SetKeepAlive(true)
	conn.SetKeepAlivePeriod(keepAliveIdle)
	input := bufio.NewReader(conn)
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		line, err := input.ReadSlice('\n')
		// A line longer than the reader's buffer is echoed in pieces.
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
		if _, err := conn.Write(line); err != nil {
			return
		}
	}
}

func main() {
	listener, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "go echo server cannot listen:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", listener.Addr().(*net.TCPAddr).Port)
	for {
		conn, err := listener.AcceptTCP()
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			continue
		}
		go serve(conn)
	}
}
