package loadgen

// batchSize is the most datagrams one receive or send system call of a client moves
// (recvmmsg and sendmmsg on Linux; elsewhere one datagram a call). The echo peers batch
// on their own (peerBatch).
const batchSize = 64

// frameBufSize is the receive buffer per datagram: larger than any frame the generator
// sends or expects back (MaxSize plus TURN's framing).
const frameBufSize = 2048

// dgramBatch is a set of datagram buffers that one system call receives into or sends from.
// A batch is owned by one goroutine.
type dgramBatch struct {
	bufs [][]byte // len(bufs) datagrams; recv fills bufs[i][:lens[i]]
	lens []int
	sys  batchSys // the platform's headers, built once
}

// newRecvBatch returns a batch of n empty frameBufSize buffers to receive into.
func newRecvBatch(n int) *dgramBatch {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, frameBufSize)
	}
	return newBatch(bufs)
}

// newSendBatch returns a batch of n copies of frame to stamp and send.
func newSendBatch(n int, frame []byte) *dgramBatch {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = append([]byte(nil), frame...)
	}
	return newBatch(bufs)
}

func newBatch(bufs [][]byte) *dgramBatch {
	b := &dgramBatch{bufs: bufs, lens: make([]int, len(bufs))}
	for i, buf := range bufs {
		b.lens[i] = len(buf)
	}
	b.sys.init(b)
	return b
}
