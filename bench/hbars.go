package bench

import (
	"image/color"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Horizontal bar panels: one row per model, the first at the top, the value
// written at the bar's end, the models tied with the first joined by a bracket.
// They make the small multiples of throughput and CPU per request, a panel per
// concurrency, each on its own axis, so that a 2 µs difference at one
// concurrency is not flattened by a 250 µs bar at another.

// hbarRoom is how far past the longest bar or whisker the x axis runs: room for
// the value written at the bar's end and for the bracket.
const hbarRoom = 1.38

// addHBars draws pn.HBars on p and adds to the legend what their marks mean.
func addHBars(p *plot.Plot, legend *legendOnce, pn Panel) {
	n := len(pn.HBars)
	names := make([]string, n)
	for i, b := range pn.HBars {
		names[n-1-i] = b.Name // NominalY puts the first name at the bottom
	}
	p.NominalY(names...)
	p.Y.Tick.Label.Font.Size = font.Length(10)
	p.Y.Label.Text = ""
	p.X.Label.Text = pn.XLabel
	p.X.Tick.Marker = humanTicks{plot.DefaultTicks{}, pn.XMicros}
	hb := &hbars{bars: pn.HBars, clip: pn.XClip}
	p.Add(hb)
	_, _, _, top := hb.xRange()
	p.X.Min, p.X.Max = 0, top*hbarRoom
	if top <= 0 {
		p.X.Max = 1
	}
	swatch := func(b HBar) *hbars { return &hbars{bars: []HBar{b}} }
	if slices.ContainsFunc(pn.HBars, func(b HBar) bool { return b.ClientBound }) {
		legend.Add("client-bound", swatch(HBar{Model: "", ClientBound: true}))
	}
	if slices.ContainsFunc(pn.HBars, func(b HBar) bool { return b.Apart }) {
		legend.Add("not all served", swatch(HBar{Model: "", Apart: true}))
	}
	if slices.ContainsFunc(pn.HBars, func(b HBar) bool { return b.Peer }) {
		legend.Add("reference peer", swatch(HBar{Model: PeerPrefix, Peer: true}))
	}
	if _, _, ok := tiedSpan(pn.HBars); ok {
		legend.Add("tied with the top", bracketThumb{})
	}
	for _, b := range pn.HBars {
		for _, sg := range b.Segments {
			legend.Add(sg.Name, segmentThumb{palette[(sg.Hue-1)%len(palette)]})
		}
	}
	if hb.clipped() {
		legend.Add("cut: axis ends", clipThumb{})
	}
}

// tiedSpan is the rows the bracket spans, from the first tied row to the last;
// ok is false with fewer than two tied rows (no bracket).
func tiedSpan(bs []HBar) (first, last int, ok bool) {
	first, last = -1, -1
	for i, b := range bs {
		if b.Tied {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last, first >= 0 && last > first
}

// hbars plots horizontal bars at the nominal rows 0…n-1, the first bar on the
// top row.
type hbars struct {
	bars []HBar
	// clip, if positive, ends the axis: a longer bar is cut there, with a
	// break mark, its value still written at its end.
	clip float64
}

// clipped reports whether a bar or whisker is cut.
func (h *hbars) clipped() bool {
	return h.clip > 0 && slices.ContainsFunc(h.bars, func(b HBar) bool { return max(b.Value, b.Hi) > h.clip })
}

// xRange is the x the bars and whiskers reach, cut at clip.
func (h *hbars) xRange() (xmin, ymin, ymax, xmax float64) {
	for _, b := range h.bars {
		xmax = max(xmax, b.Value, b.Hi)
	}
	if h.clip > 0 {
		xmax = min(xmax, h.clip)
	}
	return 0, -0.5, float64(len(h.bars)) - 0.5, xmax
}

// cut is x cut at the clip.
func (h *hbars) cut(x float64) float64 {
	if h.clip > 0 {
		return min(x, h.clip)
	}
	return x
}

var hbarText = draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 9), Handler: plot.DefaultTextHandler, YAlign: draw.YCenter}

func (h *hbars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(h.bars)
	if n == 0 {
		return
	}
	half := (trY(1) - trY(0)) * 0.32
	if n == 1 {
		half = vg.Points(7)
	}
	rowY := func(i int) vg.Length { return trY(float64(n - 1 - i)) }
	for i, b := range h.bars {
		y := rowY(i)
		x0, x1 := trX(0), trX(h.cut(math.Max(b.Value, 0)))
		rect := []vg.Point{{X: x0, Y: y - half}, {X: x0, Y: y + half}, {X: x1, Y: y + half}, {X: x1, Y: y - half}}
		drawHBar(&c, b, rect)
		if len(b.Segments) > 0 {
			// Stacked parts over the bar, then its outline again over them (a
			// client-bound, apart or peer bar keeps its mark).
			at := 0.0
			for _, sg := range b.Segments {
				xa, xb := trX(h.cut(at)), trX(h.cut(at+sg.Value))
				at += sg.Value
				part := []vg.Point{{X: xa, Y: y - half}, {X: xa, Y: y + half}, {X: xb, Y: y + half}, {X: xb, Y: y - half}}
				c.FillPolygon(palette[(sg.Hue-1)%len(palette)], c.ClipPolygonXY(part))
				c.StrokeLines(draw.LineStyle{Color: color.Black, Width: vg.Points(0.4)}, c.ClipLinesXY(append(part, part[0]))...)
			}
			c.StrokeLines(hbarOutline(b), c.ClipLinesXY(append(slices.Clone(rect), rect[0]))...)
		}
		if h.clip > 0 && b.Value > h.clip {
			drawBreak(&c, x1-vg.Points(9), y, half)
		}
		end := x1
		if b.Hi > b.Lo && b.Lo < h.cut(b.Hi) {
			xl, xh := trX(b.Lo), trX(h.cut(b.Hi))
			cp := half * 0.6
			ws := draw.LineStyle{Color: color.Black, Width: vg.Points(1.1)}
			c.StrokeLines(ws, []vg.Point{{X: xl, Y: y}, {X: xh, Y: y}},
				[]vg.Point{{X: xl, Y: y - cp}, {X: xl, Y: y + cp}}, []vg.Point{{X: xh, Y: y - cp}, {X: xh, Y: y + cp}})
			end = max(end, xh)
		}
		if b.Label != "" {
			c.FillText(hbarText, vg.Point{X: end + vg.Points(3), Y: y}, b.Label)
		}
	}
	// The bracket: a vertical line at the right edge from the first tied row
	// to the last, with a tooth at every tied row (a row inside the span
	// without a tooth is not tied).
	if first, last, ok := tiedSpan(h.bars); ok {
		x := c.Max.X - vg.Points(4)
		ls := draw.LineStyle{Color: color.Gray{Y: 40}, Width: vg.Points(1.3)}
		c.StrokeLine2(ls, x, rowY(first), x, rowY(last))
		for i := first; i <= last; i++ {
			if h.bars[i].Tied {
				c.StrokeLine2(ls, x-vg.Points(6), rowY(i), x, rowY(i))
			}
		}
	}
}

// drawHBar fills and outlines one bar: the model's colour; hollow when apart;
// a red outline when client-bound; a dotted outline for a peer.
func drawHBar(c *draw.Canvas, b HBar, rect []vg.Point) {
	fill := color.Color(LookOf(b.Model).Color)
	if b.Model == "" { // a legend swatch of a mark, not of a model
		fill = color.RGBA{200, 200, 200, 255}
	}
	if b.Apart {
		fill = color.White
	}
	c.FillPolygon(fill, c.ClipPolygonXY(rect))
	c.StrokeLines(hbarOutline(b), c.ClipLinesXY(append(slices.Clone(rect), rect[0]))...)
}

// hbarOutline is a bar's outline: red when client-bound, dotted for a peer, in
// the model's colour when apart (hollow), else thin black.
func hbarOutline(b HBar) draw.LineStyle {
	switch {
	case b.ClientBound:
		return draw.LineStyle{Color: warnRed, Width: vg.Points(2)}
	case b.Peer:
		return draw.LineStyle{Color: color.Black, Width: vg.Points(1.2), Dashes: peerDash}
	case b.Apart:
		clr := color.Color(LookOf(b.Model).Color)
		if b.Model == "" {
			clr = color.RGBA{150, 150, 150, 255}
		}
		return draw.LineStyle{Color: clr, Width: vg.Points(1.6)}
	}
	return draw.LineStyle{Color: color.Black, Width: vg.Points(0.5)}
}

func (h *hbars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, ymin, ymax, xmax = h.xRange()
	return xmin, xmax, ymin, ymax
}

// drawBreak marks a bar cut at the axis's end: two white slashes across it at x.
func drawBreak(c *draw.Canvas, x, y, half vg.Length) {
	ls := draw.LineStyle{Color: color.White, Width: vg.Points(2.2)}
	for _, dx := range []vg.Length{0, vg.Points(4)} {
		c.StrokeLine2(ls, x+dx-vg.Points(2), y-half-vg.Points(1), x+dx+vg.Points(2), y+half+vg.Points(1))
	}
}

// clipThumb is the legend's swatch of a cut bar.
type clipThumb struct{}

func (clipThumb) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}}
	c.FillPolygon(color.RGBA{150, 150, 150, 255}, pts)
	drawBreak(c, (c.Min.X+c.Max.X)/2-vg.Points(2), (c.Min.Y+c.Max.Y)/2, (c.Max.Y-c.Min.Y)/2)
}

// Thumbnail is the legend's swatch of the (single) bar's style.
func (h *hbars) Thumbnail(c *draw.Canvas) {
	var b HBar
	if len(h.bars) > 0 {
		b = h.bars[0]
	}
	drawHBar(c, b, []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}})
}

// bracketThumb is the bracket's legend swatch.
type bracketThumb struct{}

func (bracketThumb) Thumbnail(c *draw.Canvas) {
	ls := draw.LineStyle{Color: color.Gray{Y: 40}, Width: vg.Points(1.3)}
	x := c.Max.X - vg.Points(2)
	c.StrokeLine2(ls, x, c.Min.Y, x, c.Max.Y)
	c.StrokeLine2(ls, x-vg.Points(6), c.Min.Y, x, c.Min.Y)
	c.StrokeLine2(ls, x-vg.Points(6), c.Max.Y, x, c.Max.Y)
}

// segmentThumb is the legend's swatch of a stacked part.
type segmentThumb struct{ color color.Color }

func (t segmentThumb) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}}
	c.FillPolygon(t.color, pts)
}
