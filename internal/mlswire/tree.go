package mlswire

import "fmt"

// ParentNode is an interior node of the ratchet tree (RFC 9420 §7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []uint32
}

func (p *ParentNode) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.EncryptionKey = r.opaque()
	p.ParentHash = r.opaque()
	p.UnmergedLeaves = readList(r, "unmerged_leaves", func(v *uint32, r *reader) { *v = r.u32() })
	r.wrap("parent node")
}

func (p *ParentNode) marshal(w *writer) {
	w.opaque(p.EncryptionKey)
	w.opaque(p.ParentHash)
	writeList(w, p.UnmergedLeaves, func(v *uint32, w *writer) { w.u32(*v) })
}

// Node is a non-blank ratchet tree node (RFC 9420 §12.4.3.3): Leaf is set
// for NodeTypeLeaf and Parent for NodeTypeParent.
type Node struct {
	Type   NodeType
	Leaf   *LeafNode
	Parent *ParentNode
}

func (n *Node) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	n.Type = NodeType(r.u8())
	switch n.Type {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.unmarshal(r)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.unmarshal(r)
	default:
		r.fail(fmt.Errorf("node type %d: %w", n.Type, ErrMalformed))
	}
	r.wrap("node")
}

func (n *Node) marshal(w *writer) {
	w.u8(uint8(n.Type))
	switch {
	case n.Type == NodeTypeLeaf && n.Leaf != nil:
		n.Leaf.marshal(w)
	case n.Type == NodeTypeParent && n.Parent != nil:
		n.Parent.marshal(w)
	default:
		w.fail(fmt.Errorf("node type %d without its body: %w", n.Type, ErrMalformed))
	}
}

// RatchetTree is the public state of a group's tree as carried in the
// ratchet_tree extension (RFC 9420 §12.4.3.3): nodes in array order, nil
// for blank nodes.
type RatchetTree []*Node

func (t *RatchetTree) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	*t = readList(r, "ratchet tree", func(p **Node, r *reader) {
		if r.optional() {
			*p = new(Node)
			(*p).unmarshal(r)
		}
	})
	r.wrap("ratchet tree")
}

func (t *RatchetTree) marshal(w *writer) {
	writeList(w, *t, func(p **Node, w *writer) {
		w.optional(*p != nil)
		if *p != nil {
			(*p).marshal(w)
		}
	})
}
