package proto

import (
	"encoding/binary"
	"os"
)

// Out is what a session owes its peer, in order: bytes, and ranges of open files
// spliced in between them, which a model sends with sendfile(2) (or reads and
// writes, where it cannot). A session appends bytes to Buf and files with AddFile;
// a model takes the output from the head with Head and Advance, and Resets an Out
// it abandons (which closes its files). The zero value is empty.
//
// Echo and rpc only ever append to Buf, so for them an Out is a byte slice with a
// read offset and the write path is the plain one.
type Out struct {
	// Buf holds the bytes owed, from an internal offset on. Sessions append to it.
	Buf      []byte
	off      int        // Buf[:off] is written
	files    []filePart // in order of at
	fileLeft int64      // bytes the files still owe, frame headers included
}

// filePart is a range of an open file, sent once every byte of Buf before at went.
type filePart struct {
	at    int // position in Buf before which the part goes out
	f     *os.File
	fd    int
	off   int64 // next file offset to send
	left  int64 // file bytes still to send
	frame int   // > 0: the content goes as rpc frames of at most frame bytes
	chunk int64 // file bytes left in the current frame (framed parts)
	hdr   [HeaderLen]byte
	nh    int // header bytes of the current frame sent (framed parts)
}

// Piece is the next thing to send: either Bytes, or N bytes of the open file FD
// (File) from offset Off. A zero Piece means nothing is owed. More marks Bytes that
// a file range follows at once: a writer should let the kernel hold them back to
// share a segment with it (MSG_MORE), or a small header goes out as a packet of
// its own ahead of every file.
type Piece struct {
	More  bool
	Bytes []byte
	File  *os.File
	FD    int
	Off   int64
	N     int
}

// maxSendfile bounds one sendfile piece, so one call cannot hold a loop for long.
const maxSendfile = 1 << 20

// keepOut: a Buf that grew past this is dropped once drained, so a burst does not
// pin memory on an idle connection.
const keepOut = 64 << 10

// AddFile appends n bytes of f from offset off; Out owns f from now on and closes
// it once sent or on Reset. frame > 0 sends the content as rpc frames (a header,
// then at most frame bytes) instead of raw; n = 0 closes f at once and adds nothing.
func (o *Out) AddFile(f *os.File, off, n int64, frame int) {
	if n <= 0 {
		f.Close()
		return
	}
	o.files = append(o.files, filePart{at: len(o.Buf), f: f, fd: int(f.Fd()), off: off, left: n, frame: frame, nh: HeaderLen})
	o.fileLeft += n
	if frame > 0 {
		o.fileLeft += HeaderLen * ((n + int64(frame) - 1) / int64(frame))
	}
}

// Len is the number of bytes owed.
func (o *Out) Len() int64 { return int64(len(o.Buf)-o.off) + o.fileLeft }

// Buffered is the number of owed bytes held in memory (Len without the files).
func (o *Out) Buffered() int { return len(o.Buf) - o.off }

// Files is the number of open files the output holds.
func (o *Out) Files() int { return len(o.files) }

// Head returns the next piece to send without consuming it.
func (o *Out) Head() Piece {
	end := len(o.Buf)
	if len(o.files) > 0 {
		end = o.files[0].at
	}
	if o.off < end {
		return Piece{Bytes: o.Buf[o.off:end], More: len(o.files) > 0}
	}
	if len(o.files) == 0 {
		return Piece{}
	}
	p := &o.files[0]
	if p.frame > 0 {
		if p.chunk == 0 { // a new frame starts: its header goes first
			p.chunk = min(int64(p.frame), p.left)
			binary.BigEndian.PutUint32(p.hdr[:], uint32(p.chunk))
			p.nh = 0
		}
		if p.nh < HeaderLen {
			return Piece{Bytes: p.hdr[p.nh:], More: true}
		}
		return Piece{File: p.f, FD: p.fd, Off: p.off, N: int(min(p.chunk, maxSendfile))}
	}
	return Piece{File: p.f, FD: p.fd, Off: p.off, N: int(min(p.left, maxSendfile))}
}

// Advance consumes n bytes of the piece Head returned (0 < n <= its length).
func (o *Out) Advance(n int) {
	end := len(o.Buf)
	if len(o.files) > 0 {
		end = o.files[0].at
	}
	switch {
	case o.off < end:
		o.off += n
	case o.files[0].nh < HeaderLen:
		o.files[0].nh += n
		o.fileLeft -= int64(n)
	default:
		p := &o.files[0]
		p.off += int64(n)
		p.left -= int64(n)
		p.chunk = max(0, p.chunk-int64(n))
		o.fileLeft -= int64(n)
		if p.left == 0 {
			p.f.Close()
			o.files[0] = filePart{}
			o.files = o.files[1:]
		}
	}
	if o.off == len(o.Buf) && len(o.files) == 0 {
		o.drained()
	}
}

// drained empties Buf, keeping its memory unless it grew large.
func (o *Out) drained() {
	if cap(o.Buf) > keepOut {
		o.Buf = nil
	} else {
		o.Buf = o.Buf[:0]
	}
	o.off = 0
	o.files = o.files[:0]
}

// MoveFrom appends what src owes to o, and empties src: its files pass to o.
func (o *Out) MoveFrom(src *Out) {
	if src.Len() == 0 {
		src.drained()
		return
	}
	o.compact()
	shift := len(o.Buf) - src.off
	o.Buf = append(o.Buf, src.Buf[src.off:]...)
	for _, p := range src.files {
		p.at += shift
		o.files = append(o.files, p)
	}
	o.fileLeft += src.fileLeft
	clear(src.files)
	src.files = src.files[:0]
	src.fileLeft = 0
	src.drained()
}

// compact moves the unwritten bytes of Buf to its front once the written ones
// are at least half of it, so an Out that never drains completely (a connection
// always owing something) does not keep every byte it ever sent.
func (o *Out) compact() {
	if o.off < 4096 || o.off < len(o.Buf)/2 {
		return
	}
	n := copy(o.Buf, o.Buf[o.off:])
	o.Buf = o.Buf[:n]
	for i := range o.files {
		o.files[i].at -= o.off
	}
	o.off = 0
}

// Reset drops everything owed and closes the files.
func (o *Out) Reset() {
	for i := range o.files {
		o.files[i].f.Close()
	}
	clear(o.files)
	o.fileLeft = 0
	o.drained()
}
