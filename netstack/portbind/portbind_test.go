package portbind

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Range
	}{
		{"", nil},
		{"\n", nil},
		{"8080", []Range{{8080, 8080}}},
		{"52415-52418,8080\n", []Range{{52415, 52418}, {8080, 8080}}},
		{" 1-2 , 3 ", []Range{{1, 2}, {3, 3}}},
	} {
		got, err := ParseList(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"a", "5-3", "70000", "1-", "-4", "1,,2", "1-2-3"} {
		if got, err := ParseList(in); err == nil {
			t.Errorf("ParseList(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "port list item") {
			t.Errorf("ParseList(%q): error %q does not name the item", in, err)
		}
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{"", "8080", "52415-52418,8080", "1-2,3", "5-3", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseList(s)
		if err != nil {
			return
		}
		parts := make([]string, len(rs))
		for i, r := range rs {
			if r.Low < 0 || r.High > 65535 || r.High < r.Low {
				t.Fatalf("ParseList(%q) gave the bad range %v", s, r)
			}
			parts[i] = fmt.Sprintf("%d-%d", r.Low, r.High)
		}
		again, err := ParseList(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, rs) {
			t.Fatalf("ParseList(%q) = %v, but its own rendering parses to %v, %v", s, rs, again, err)
		}
	})
}

func TestExposed(t *testing.T) {
	p := Policy{Ephemeral: Range{32768, 60999}, Reserved: []Range{{52415, 52418}, {40000, 40000}}}
	for port, want := range map[int]bool{32767: false, 32768: true, 52414: true, 52415: false, 52418: false,
		52419: true, 40000: false, 60999: true, 61000: false, 8080: false} {
		if got := p.Exposed(port); got != want {
			t.Errorf("Exposed(%d) = %v, want %v", port, got, want)
		}
	}
}

func TestReadPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ip_local_port_range", "32768\t60999\n")
	write("ip_local_reserved_ports", "52415-52418\n")
	p, err := ReadPolicy(dir)
	want := Policy{Ephemeral: Range{32768, 60999}, Reserved: []Range{{52415, 52418}}}
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("ReadPolicy = %+v, %v; want %+v", p, err, want)
	}
	write("ip_local_reserved_ports", "52415-x\n")
	if _, err := ReadPolicy(dir); err == nil || !strings.Contains(err.Error(), "ip_local_reserved_ports") {
		t.Fatalf("a bad reserved list: error %v does not name the file", err)
	}
	write("ip_local_port_range", "32768\n")
	if _, err := ReadPolicy(dir); err == nil || !strings.Contains(err.Error(), "ip_local_port_range") {
		t.Fatalf("a bad range: error %v does not name the file", err)
	}
	if _, err := ReadPolicy(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("ReadPolicy of a missing directory succeeded")
	}
}

// holdEphemeral opens a UDP socket on a port the kernel picks, as an outgoing socket would get.
func holdEphemeral(t *testing.T) (*net.UDPConn, int) {
	t.Helper()
	if _, err := ReadPolicy(DefaultSysctlDir); err != nil {
		t.Skipf("no Linux port policy here: %v", err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).Port
}

func listenUDP(addr string, tries *int) func() (*net.UDPConn, error) {
	return func() (*net.UDPConn, error) {
		*tries++
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, err
		}
		return net.ListenUDP("udp", ua)
	}
}

func TestBindWaitsForAnEphemeralHolder(t *testing.T) {
	holder, port := holdEphemeral(t)
	go func() { time.Sleep(300 * time.Millisecond); holder.Close() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tries := 0
	c, err := Bind(addr, listenUDP(addr, &tries))
	if err != nil {
		t.Fatalf("Bind %s after its holder closed: %v", addr, err)
	}
	c.Close()
	if tries < 2 {
		t.Fatalf("Bind took %s in %d try; the port was held at first", addr, tries)
	}
}

func TestBindGivesUpAndSaysWhy(t *testing.T) {
	defer func(w time.Duration) { Wait = w }(Wait)
	Wait = 300 * time.Millisecond
	_, port := holdEphemeral(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	tries := 0
	_, err := Bind(addr, listenUDP(addr, &tries))
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "ephemeral port range") ||
		!strings.Contains(err.Error(), fmt.Sprint(port)) || !strings.Contains(err.Error(), "ip_local_reserved_ports") {
		t.Fatalf("Bind of a held ephemeral port: %v", err)
	}
	if tries < 2 {
		t.Fatalf("Bind gave up after %d try", tries)
	}
}

func TestBindFailsAtOnceOutsideTheEphemeralRange(t *testing.T) {
	pol, err := ReadPolicy(DefaultSysctlDir)
	if err != nil {
		t.Skipf("no Linux port policy here: %v", err)
	}
	// A listener below the ephemeral range was bound on purpose; waiting would not help.
	var held *net.UDPConn
	var addr string
	for port := pol.Ephemeral.Low - 1; port > 1024 && held == nil; port -= 97 {
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		held, _ = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	if held == nil {
		t.Skip("no free port below the ephemeral range")
	}
	defer held.Close()
	tries := 0
	_, err = Bind(addr, listenUDP(addr, &tries))
	if !errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "ephemeral") || tries != 1 {
		t.Fatalf("Bind of a listener's port: %d tries, %v", tries, err)
	}
}

func TestBindPassesOtherErrorsThrough(t *testing.T) {
	boom := errors.New("boom")
	tries := 0
	_, err := Bind("127.0.0.1:52416", func() (int, error) { tries++; return 0, boom })
	if err != boom || tries != 1 {
		t.Fatalf("Bind = %v after %d tries, want the bind error at once", err, tries)
	}
}

func TestBindFailsAtOnceOnAListener(t *testing.T) {
	if _, err := ReadPolicy(DefaultSysctlDir); err != nil {
		t.Skipf("no Linux port policy here: %v", err)
	}
	// A port-0 listener gets an ephemeral port: exactly the case where only the socket table
	// tells a listener from a passing socket.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	tries := 0
	_, err = Bind(addr, func() (net.Listener, error) { tries++; return net.Listen("tcp", addr) })
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "a program listens on TCP port") || tries != 1 {
		t.Fatalf("Bind of a listener's ephemeral port: %d tries, %v", tries, err)
	}
}

func TestListeningTCP(t *testing.T) {
	dir := t.TempDir()
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:CCBF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:CCC0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:CCC1 00000000000000000000000000000000:0000 0A 00000000:00000000
`
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(tcp), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tcp6"), []byte(tcp6), 0o600); err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int]bool{0xCCBF: true, 0xCCC0: false, 0xCCC1: true, 0x1F90: false, 52418: false} {
		if got := ListeningTCP(dir, port); got != want {
			t.Errorf("ListeningTCP(%d) = %v, want %v", port, got, want)
		}
	}
	if ListeningTCP(filepath.Join(dir, "absent"), 0xCCBF) {
		t.Error("missing tables report a listener")
	}
}
