package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// Error kinds, the keys of the report's "errors" object.
const (
	errConnect = "connect"
	errWrite   = "write"
	errRead    = "read"
	errTimeout = "timeout"
	errParse   = "parse"
	errStatus  = "status" // a complete response with a status outside 2xx/3xx
)

var errorKinds = []string{errConnect, errWrite, errRead, errTimeout, errParse, errStatus}

var errMalformed = errors.New("malformed response")

const readBufferBytes = 64 << 10

// conn is one keep-alive HTTP/1.1 connection sending one request at a time
// (no pipelining), reopened after any error or a "Connection: close".
type conn struct {
	target  string
	request []byte
	timeout time.Duration
	nc      net.Conn
	r       *bufio.Reader
	bytes   uint64
}

func (c *conn) dial() error {
	nc, err := net.DialTimeout("tcp", c.target, c.timeout)
	if err != nil {
		return err
	}
	c.nc = nc
	if c.r == nil {
		c.r = bufio.NewReaderSize(nc, readBufferBytes)
	} else {
		c.r.Reset(nc)
	}
	return nil
}

func (c *conn) close() {
	if c.nc != nil {
		_ = c.nc.Close() // the connection is being discarded; its close error changes nothing
		c.nc = nil
	}
}

// roundTrip sends the request and reads the whole response. It returns the
// status code, whether the request was written, and the error kind ("" on success).
func (c *conn) roundTrip() (status int, sent bool, kind string) {
	if c.nc == nil {
		if err := c.dial(); err != nil {
			return 0, false, errConnect
		}
	}
	if err := c.nc.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		c.close()
		return 0, false, errWrite
	}
	if _, err := c.nc.Write(c.request); err != nil {
		c.close()
		return 0, false, classify(err, errWrite)
	}
	status, keepAlive, err := c.readResponse()
	if err != nil {
		c.close()
		return 0, true, classify(err, errRead)
	}
	if !keepAlive {
		c.close()
	}
	return status, true, ""
}

func classify(err error, fallback string) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errTimeout
	case errors.Is(err, errMalformed):
		return errParse
	default:
		return fallback
	}
}

func (c *conn) readResponse() (status int, keepAlive bool, err error) {
	line, err := c.line()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, errMalformed
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err := c.line()
		if err != nil {
			return 0, false, err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false, errMalformed
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("content-length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("transfer-encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("connection")):
			keepAlive = !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		err = c.discardChunked()
	case length >= 0:
		err = c.discard(length)
	case status == 204 || status == 304 || status < 200:
	default:
		// No length: the body runs to the end of the connection.
		var n int64
		n, err = io.Copy(io.Discard, c.r)
		c.bytes += uint64(n)
		keepAlive = false
	}
	return status, keepAlive, err
}

// line reads one CRLF-terminated line without the CRLF; it is valid until the next read.
func (c *conn) line() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errMalformed
	}
	if err != nil {
		return nil, err
	}
	c.bytes += uint64(len(line))
	return bytes.TrimRight(line, "\r\n"), nil
}

func (c *conn) discard(n int64) error {
	for n > 0 {
		step := int(min(n, readBufferBytes))
		done, err := c.r.Discard(step)
		c.bytes += uint64(done)
		n -= int64(done)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (c *conn) discardChunked() error {
	for {
		line, err := c.line()
		if err != nil {
			return err
		}
		if semi := bytes.IndexByte(line, ';'); semi >= 0 {
			line = line[:semi]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return errMalformed
		}
		if size == 0 {
			// Trailers, then the blank line.
			for {
				line, err := c.line()
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if err := c.discard(size + 2); err != nil {
			return err
		}
	}
}
