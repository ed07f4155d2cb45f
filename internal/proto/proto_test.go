package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func frame(p string) []byte { return AppendFrame(nil, []byte(p)) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestAppendUpper(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"hello", "HELLO"},
		{"MiXeD 123 {}`@[", "MIXED 123 {}`@["},
		{"\x00\xffaz\x7f", "\x00\xffAZ\x7f"},
	}
	for _, tt := range tests {
		if got := string(AppendUpper([]byte("x"), []byte(tt.in))); got != "x"+tt.want {
			t.Errorf("AppendUpper(%q) = %q, want %q", tt.in, got, "x"+tt.want)
		}
	}
}

func TestRPCFeed(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("ab"), 40000)
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"one frame", frame("hi"), frame("HI"), nil},
		{"empty frame", frame(""), frame(""), nil},
		{"several frames", cat(frame("a"), frame(""), frame("bc")), cat(frame("A"), frame(""), frame("BC")), nil},
		{"partial header", []byte{0, 0}, nil, nil},
		{"partial body", frame("hello")[:6], nil, nil},
		{"big frame", AppendFrame(nil, big), AppendFrame(nil, bytes.ToUpper(big)), nil},
		{"at max", AppendFrame(nil, make([]byte, 100)), AppendFrame(nil, make([]byte, 100)), nil},
		{"over max", binary.BigEndian.AppendUint32(nil, 101), nil, ErrFrameTooLarge},
		{"over max after good", cat(frame("ok"), binary.BigEndian.AppendUint32(nil, 1<<31)), frame("OK"), ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxFrame := DefaultMaxFrame
			if tt.name == "at max" || tt.name == "over max" {
				maxFrame = 100
			}
			p, err := New("rpc", Options{MaxFrame: maxFrame})
			if err != nil {
				t.Fatal(err)
			}
			// Every split into two reads must give the same answer as one read.
			for cut := 0; cut <= len(tt.in); cut += 1 + len(tt.in)/64 {
				s := p.NewSession()
				got, err := feed(s, nil, tt.in[:cut])
				if err == nil {
					got, err = feed(s, got, tt.in[cut:])
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("cut %d: err = %v, want %v", cut, err, tt.wantErr)
				}
				if tt.wantErr != nil && !errors.Is(err, ErrProtocol) {
					t.Fatalf("cut %d: err %v does not wrap ErrProtocol", cut, err)
				}
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("cut %d: got %d bytes %q, want %d bytes %q", cut, len(got), trunc(got), len(tt.want), trunc(tt.want))
				}
			}
		})
	}
}

func TestRPCByteAtATime(t *testing.T) {
	p, _ := New("rpc", Options{})
	s := p.NewSession()
	in := cat(frame("abc"), frame(""), frame("xyz!"))
	var out []byte
	for i := range in {
		var err error
		if out, err = feed(s, out, in[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if want := cat(frame("ABC"), frame(""), frame("XYZ!")); !bytes.Equal(out, want) {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestEcho(t *testing.T) {
	p, err := New("echo", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := p.NewSession()
	out, _ := feed(s, nil, []byte("abc"))
	out, _ = feed(s, out, []byte("Def"))
	if string(out) != "ABCDEF" {
		t.Fatalf("got %q", out)
	}
}

func TestNewUnknown(t *testing.T) {
	_, err := New("gopher", Options{})
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("err = %v, want ErrUnknown", err)
	}
	if want := "echo, file, http, rpc"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not list %q", err, want)
	}
}

func TestParseWork(t *testing.T) {
	tests := []struct {
		in      string
		want    Work
		wantErr bool
	}{
		{"", Work{}, false},
		{"none", Work{}, false},
		{"cpu:50us", Work{WorkCPU, 50 * time.Microsecond}, false},
		{"sleep:1ms", Work{WorkSleep, time.Millisecond}, false},
		{"sleep", Work{}, true},
		{"cpu:-1ms", Work{}, true},
		{"cpu:0s", Work{}, true},
		{"nap:1ms", Work{}, true},
		{"cpu:fast", Work{}, true},
	}
	for _, tt := range tests {
		got, err := ParseWork(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseWork(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			back, err := ParseWork(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %q via %q = %v, %v", tt.in, got.String(), back, err)
			}
		}
	}
}

func TestWorkDo(t *testing.T) {
	for _, w := range []Work{{WorkCPU, 2 * time.Millisecond}, {WorkSleep, 2 * time.Millisecond}} {
		start := time.Now()
		w.Do()
		if el := time.Since(start); el < w.D {
			t.Errorf("%v took %v, want at least %v", w, el, w.D)
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// feed is Feed on a byte slice, for sessions that only append bytes.
func feed(s Session, dst, src []byte) ([]byte, error) {
	o := Out{Buf: dst}
	err := s.Feed(&o, src)
	return o.Buf, err
}
