package bench

import (
	"bufio"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Image geometry: a panel is panelW × panelH, the legend takes legendW on the right.
// A horizontal bar panel is hbarW wide and hbarRowH a row high (plus hbarFrame
// for its title and axis), hbarMinH at least.
const (
	panelW    = 9 * vg.Inch
	panelH    = 5 * vg.Inch
	legendW   = 2.2 * vg.Inch
	hbarW     = 5 * vg.Inch
	hbarRowH  = 0.27 * vg.Inch
	hbarFrame = 1.1 * vg.Inch
	hbarMinH  = 2.8 * vg.Inch
	dpi       = 110
)

// palette colours what is not a model, by position or by a fixed hue: the bar
// sets of a figure (concurrencies, works) and the syscalls (hueOf). Models take
// their colour from LookOf.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255}, {0, 0, 0, 255}, {0, 0, 128, 255},
	{128, 128, 0, 255}, {255, 187, 120, 255}, {152, 223, 138, 255}, {174, 199, 232, 255},
	{255, 215, 0, 255}, {0, 100, 0, 255}, {128, 0, 128, 255}, {0, 206, 209, 255},
	{139, 69, 19, 255}, {255, 0, 255, 255}, {128, 128, 255, 255}, {0, 128, 128, 255},
	{128, 0, 0, 255},
}

var warnRed = color.RGBA{220, 0, 0, 255}

// peerDash is the line pattern of reference peers: dotted, unlike any model's.
var peerDash = []vg.Length{vg.Points(1.5), vg.Points(3)}

// Render draws f as a PNG at path.
func Render(f Figure, path string) (err error) {
	// gonum/plot panics on some inputs (a non-positive value on a log axis); the
	// figure builders filter those, and this turns any that slips through into an
	// error instead of a crash of the whole report.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plot %s: %v", f.Name, r)
		}
	}()
	n := len(f.Panels)
	if n == 0 {
		return fmt.Errorf("plot %s: no panels", f.Name)
	}
	cols := max(1, min(f.Cols, n))
	rows := (n + cols - 1) / cols
	// One legend for all panels: an entry a later panel repeats (the same model)
	// is shown once. The panels are built first: a figure whose panels need no
	// legend (horizontal bars name their rows) gets no legend column.
	legend := &legendOnce{Legend: plot.NewLegend(), seen: map[string]bool{}}
	legend.TextStyle.Font.Size = font.Length(11)
	plots := make([]*plot.Plot, n)
	hbarRows := 0
	for i, pn := range f.Panels {
		p, err := buildPanel(pn, legend)
		if err != nil {
			return fmt.Errorf("plot %s: %w", f.Name, err)
		}
		plots[i] = p
		hbarRows = max(hbarRows, len(pn.HBars))
	}
	legend.finish()
	if f.ShareY {
		shareY(plots)
	}
	pw, ph := panelW, panelH
	switch {
	case hbarRows > 0:
		pw, ph = hbarW, max(hbarMinH, hbarFrame+hbarRowH*vg.Length(hbarRows))
	case cols > 1:
		pw, ph = panelW*0.62, panelH*0.74
	case n > 1:
		ph = panelH * 0.75
	}
	// The legend takes a column on the right, or the last tile of the grid
	// when the panels leave it empty.
	lw := legendW
	spare := rows*cols > n
	if len(legend.seen) == 0 || spare {
		lw = 0
	}
	w, h := pw*vg.Length(cols)+lw, ph*vg.Length(rows)
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi))
	dc := draw.New(img)
	plotArea := draw.Crop(dc, 0, -lw, 0, 0)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadY: vg.Points(8), PadX: vg.Points(10)}
	for i, p := range plots {
		p.Draw(tiles.At(plotArea, i%cols, i/cols))
	}
	legend.Top, legend.Left = true, true
	legend.YOffs = -vg.Points(30)
	legend.XOffs = vg.Points(12) // clear of a bar panel's bracket at its right edge
	switch {
	case len(legend.seen) == 0:
	case spare:
		legend.XOffs = vg.Points(40)
		legend.Draw(tiles.At(plotArea, cols-1, rows-1))
	default:
		legend.Draw(draw.Crop(dc, w-lw, 0, 0, 0))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	file, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(file)
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(bw); err != nil {
		file.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// shareY puts every panel on the union of their y ranges, so that panels side
// by side compare at a glance.
func shareY(plots []*plot.Plot) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range plots {
		if p.Y.Min < p.Y.Max { // a panel with data
			lo, hi = min(lo, p.Y.Min), max(hi, p.Y.Max)
		}
	}
	if lo >= hi {
		return
	}
	for _, p := range plots {
		p.Y.Min, p.Y.Max = lo, hi
	}
}

// legendOnce is a legend that takes each name once.
type legendOnce struct {
	plot.Legend
	seen  map[string]bool // every name added, models and marks
	marks []legendMark
}

func (l *legendOnce) Add(name string, thumbs ...plot.Thumbnailer) {
	if !l.seen[name] {
		l.seen[name] = true
		l.Legend.Add(name, thumbs...)
	}
}

// AddMark adds an entry that explains a mark (client-bound, hollow, a
// vertical line) rather than names a model: marks come after every model, in
// the order first added (finish adds them).
func (l *legendOnce) AddMark(name string, thumbs ...plot.Thumbnailer) {
	if !l.seen[name] {
		l.seen[name] = true
		l.marks = append(l.marks, legendMark{name, thumbs})
	}
}

// finish adds the marks after the models.
func (l *legendOnce) finish() {
	for _, m := range l.marks {
		l.Legend.Add(m.name, m.thumbs...)
	}
	l.marks = nil
}

type legendMark struct {
	name   string
	thumbs []plot.Thumbnailer
}

func buildPanel(pn Panel, legend *legendOnce) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.Title
	p.Title.TextStyle.Font.Size = font.Length(13)
	p.X.Label.Text = pn.XLabel
	p.Y.Label.Text = pn.YLabel
	p.Add(plotter.NewGrid())
	p.Title.Padding = vg.Points(6)
	if pn.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = humanTicks{plot.LogTicks{Prec: -1}, pn.YMicros}
	} else {
		p.Y.Tick.Marker = humanTicks{plot.DefaultTicks{}, pn.YMicros}
		p.Y.Min = 0
	}
	if len(pn.HBars) > 0 {
		addHBars(p, legend, pn)
		return p, nil
	}
	if len(pn.Categories) > 0 {
		if err := addBars(p, legend, pn); err != nil {
			return nil, err
		}
		return p, nil
	}
	if pn.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = humanTicks{plot.LogTicks{Prec: -1}, false}
	} else if pn.HumanX {
		p.X.Tick.Marker = humanTicks{plot.DefaultTicks{}, false}
	}
	if len(pn.XTicks) > 0 {
		var ts plot.ConstantTicks
		for _, t := range pn.XTicks {
			ts = append(ts, plot.Tick{Value: t.Value, Label: t.Label})
		}
		p.X.Tick.Marker = ts
	}
	var bound plotter.XYs
	anyApart, anyMark := false, false
	for i, s := range pn.Series {
		lk := LookOf(cmp.Or(s.Model, s.Name))
		clr, gl, dash := lk.Color, lk.Glyph, lk.Dash
		if len(s.Points) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.Points))
		errs := make(plotter.YErrors, len(s.Points))
		hasErr := false
		// On a log x axis with error bars, each series is shifted by a small
		// constant factor so that the bars of models at the same x do not hide
		// each other (±3% of a decade across all series).
		dodge := 1.0
		if pn.LogX && len(pn.Series) > 1 && hasErrorBars(pn) {
			dodge = math.Pow(10, 0.06*(float64(i)/float64(len(pn.Series)-1)-0.5))
		}
		// The line runs through the comparable points only, broken where a
		// point is apart; those are drawn hollow, on their own.
		var runs []plotter.XYs
		var apart, marked plotter.XYs
		prevApart := true
		for j, pt := range s.Points {
			xys[j] = plotter.XY{X: pt.X * dodge, Y: pt.Y}
			// A point without an interval (Lo and Hi both 0) has no whisker.
			if pt.Lo != 0 || pt.Hi != 0 {
				lo := pt.Lo
				if pn.LogY && lo <= 0 {
					lo = pt.Y
				}
				errs[j].Low, errs[j].High = pt.Y-lo, pt.Hi-pt.Y
				if errs[j].Low != 0 || errs[j].High != 0 {
					hasErr = true
				}
			}
			if pt.ClientBound {
				bound = append(bound, xys[j])
			}
			if pt.Mark {
				marked = append(marked, xys[j])
			}
			switch {
			case pt.Apart:
				apart = append(apart, xys[j])
			case prevApart:
				runs = append(runs, plotter.XYs{xys[j]})
			default:
				runs[len(runs)-1] = append(runs[len(runs)-1], xys[j])
			}
			prevApart = pt.Apart
		}
		name := s.Name
		lineStyle := draw.LineStyle{Color: clr, Width: vg.Points(1.6), Dashes: dash}
		if s.Peer {
			// A reference peer: dotted and a little heavier, so it reads as a
			// reference line rather than one more model.
			lineStyle.Width, lineStyle.Dashes = vg.Points(2.2), peerDash
			name += " (reference)"
		}
		radius := vg.Points(3)
		if len(s.Points) > 30 {
			radius = vg.Points(1.5)
		}
		var thumbs []plot.Thumbnailer
		for _, run := range runs {
			line, pts, err := plotter.NewLinePoints(run)
			if err != nil {
				return nil, err
			}
			line.LineStyle = lineStyle
			pts.Color, pts.Shape, pts.Radius = clr, gl, radius
			p.Add(line, pts)
			if thumbs == nil {
				thumbs = []plot.Thumbnailer{line, pts}
			}
		}
		if len(apart) > 0 {
			anyApart = true
			sc, err := plotter.NewScatter(apart)
			if err != nil {
				return nil, err
			}
			sc.Shape, sc.Radius, sc.Color = draw.RingGlyph{}, radius+vg.Points(1.5), clr
			p.Add(sc)
			if thumbs == nil {
				thumbs = []plot.Thumbnailer{sc}
			}
		}
		if len(marked) > 0 {
			anyMark = true
			sc, err := plotter.NewScatter(marked)
			if err != nil {
				return nil, err
			}
			sc.Shape, sc.Radius, sc.Color = hollowBox{}, radius+vg.Points(4), clr
			p.Add(sc)
		}
		if hasErr {
			eb, err := plotter.NewYErrorBars(struct {
				plotter.XYs
				plotter.YErrors
			}{xys, errs})
			if err != nil {
				return nil, err
			}
			eb.Color, eb.Width = clr, vg.Points(1.2)
			p.Add(eb)
		}
		legend.Add(name, thumbs...)
	}
	if len(bound) > 0 {
		sc, err := plotter.NewScatter(bound)
		if err != nil {
			return nil, err
		}
		sc.Shape, sc.Radius, sc.Color = draw.RingGlyph{}, vg.Points(7), warnRed
		p.Add(sc)
		legend.AddMark("client-bound", sc)
	}
	for _, v := range pn.VLines {
		vl := &vline{x: v.X, style: draw.LineStyle{Color: color.Gray{Y: 60}, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(5), vg.Points(3)}}}
		p.Add(vl)
		legend.AddMark(v.Label, vl)
	}
	if anyApart {
		sc, err := plotter.NewScatter(plotter.XYs{})
		if err != nil {
			return nil, err
		}
		sc.Shape, sc.Radius, sc.Color = draw.RingGlyph{}, vg.Points(4.5), color.Gray{Y: 100}
		label := pn.ApartLabel
		if label == "" {
			label = "hollow: some unserved"
		}
		legend.AddMark(label, sc)
	}
	if anyMark && pn.MarkLabel != "" {
		sc, err := plotter.NewScatter(plotter.XYs{})
		if err != nil {
			return nil, err
		}
		sc.Shape, sc.Radius, sc.Color = hollowBox{}, vg.Points(5), color.Gray{Y: 100}
		legend.AddMark(pn.MarkLabel, sc)
	}
	return p, nil
}

// addBars draws grouped bars: one group per category, one bar per set.
func addBars(p *plot.Plot, legend *legendOnce, pn Panel) error {
	n := len(pn.BarSets)
	width := vg.Points(math.Min(18, 300/float64(max(1, n*len(pn.Categories)))*2.2))
	floor := 0.0
	if pn.LogY {
		floor = math.Inf(1)
		for _, bs := range pn.BarSets {
			for _, b := range bs.Bars {
				if !b.Missing && b.Value > 0 {
					floor = math.Min(floor, b.Value)
				}
			}
		}
		if math.IsInf(floor, 1) {
			return fmt.Errorf("no positive bar for a log axis")
		}
		floor = math.Pow(10, math.Floor(math.Log10(floor)))
	}
	if pn.Stacked {
		width = vg.Points(math.Min(40, 600/float64(max(1, len(pn.Categories)))))
	}
	base := make([]float64, len(pn.Categories)) // the stack so far, per category
	anyBound := false
	for i, bs := range pn.BarSets {
		clr := palette[i%len(palette)]
		if bs.Hue > 0 {
			clr = palette[(bs.Hue-1)%len(palette)]
		}
		b := &bars{set: bs, width: width, offset: (vg.Length(i) - vg.Length(n-1)/2) * width, color: clr, floor: floor}
		if pn.Stacked {
			b.offset, b.base = 0, slices.Clone(base)
			for j, v := range bs.Bars {
				if !v.Missing && j < len(base) {
					base[j] += v.Value
				}
			}
		}
		p.Add(b)
		legend.Add(bs.Name, b)
		for _, v := range bs.Bars {
			anyBound = anyBound || (v.ClientBound && !v.Missing)
		}
	}
	if anyBound {
		legend.AddMark("client-bound (red outline)", &bars{color: color.White, bound: true})
	}
	p.NominalX(pn.Categories...)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	p.X.Tick.Label.Font.Size = font.Length(11)
	return nil
}

// bars is one set of grouped bars; unlike plotter.BarChart it rises from a floor
// (the bottom of a log axis) and skips missing values.
type bars struct {
	set    BarSet
	width  vg.Length
	offset vg.Length
	color  color.Color
	floor  float64
	bound  bool      // legend thumbnail of a client-bound bar
	base   []float64 // stacked: where each category's bar starts
}

func (b *bars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for i, v := range b.set.Bars {
		if v.Missing || (b.floor > 0 && v.Value <= 0) {
			continue
		}
		x := trX(float64(i)) + b.offset - b.width/2
		lo, hi := math.Max(b.floor, p.Y.Min), v.Value
		if i < len(b.base) {
			lo, hi = b.base[i], b.base[i]+v.Value
		}
		y0, y1 := trY(lo), trY(hi)
		rect := []vg.Point{{X: x, Y: y0}, {X: x, Y: y1}, {X: x + b.width, Y: y1}, {X: x + b.width, Y: y0}}
		c.FillPolygon(b.color, c.ClipPolygonY(rect))
		ls := draw.LineStyle{Color: color.Black, Width: vg.Points(0.5)}
		if v.ClientBound {
			ls = draw.LineStyle{Color: warnRed, Width: vg.Points(2)}
		}
		c.StrokeLines(ls, c.ClipLinesY(append(rect, rect[0]))...)
		if v.Hi > v.Lo && i >= len(b.base) {
			// The interval: a whisker from Lo to Hi with caps.
			mid, cap := x+b.width/2, b.width/4
			yl, yh := trY(math.Max(v.Lo, lo)), trY(v.Hi)
			ws := draw.LineStyle{Color: color.Black, Width: vg.Points(1.2)}
			c.StrokeLines(ws, []vg.Point{{X: mid, Y: yl}, {X: mid, Y: yh}},
				[]vg.Point{{X: mid - cap, Y: yl}, {X: mid + cap, Y: yl}}, []vg.Point{{X: mid - cap, Y: yh}, {X: mid + cap, Y: yh}})
		}
	}
}

// hollowBox is a square outline: the knee's mark.
type hollowBox struct{}

func (hollowBox) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	r := sty.Radius
	c.StrokeLines(draw.LineStyle{Color: sty.Color, Width: vg.Points(1.6)}, []vg.Point{
		{X: pt.X - r, Y: pt.Y - r}, {X: pt.X - r, Y: pt.Y + r}, {X: pt.X + r, Y: pt.Y + r}, {X: pt.X + r, Y: pt.Y - r}, {X: pt.X - r, Y: pt.Y - r}})
}

func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = -0.5, float64(len(b.set.Bars))-0.5
	ymin, ymax = math.Inf(1), math.Inf(-1)
	if b.floor > 0 {
		ymin = b.floor
	} else {
		ymin = 0
	}
	for i, v := range b.set.Bars {
		if !v.Missing {
			top := math.Max(v.Value, v.Hi)
			if i < len(b.base) {
				top += b.base[i]
			}
			ymax = math.Max(ymax, top)
		}
	}
	if math.IsInf(ymax, -1) {
		ymax = ymin
	}
	return xmin, xmax, ymin, ymax
}

func (b *bars) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y}}
	c.FillPolygon(b.color, c.ClipPolygonY(pts))
	if b.bound {
		c.StrokeLines(draw.LineStyle{Color: warnRed, Width: vg.Points(2)}, append(pts, pts[0]))
	}
}

// humanTicks relabels another ticker's labels as 1k, 10k, 1M, or as durations
// ("250µs", "10ms") when the values are µs.
type humanTicks struct {
	plot.Ticker
	micros bool
}

func (h humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := h.Ticker.Ticks(lo, hi)
	if _, log := h.Ticker.(plot.LogTicks); log {
		labelFewDecades(ts, lo, hi)
	}
	for i := range ts {
		switch {
		case ts[i].Label == "":
		case h.micros && ts[i].Value == 0:
			ts[i].Label = "0"
		case h.micros:
			ts[i].Label = Micros(ts[i].Value)
		default:
			ts[i].Label = Num(ts[i].Value)
		}
	}
	return ts
}

// labelFewDecades labels a log axis's minor ticks at 2 and 5 times a power of
// ten when fewer than two of its ticks within [lo, hi] carry a label (a range
// within less than about a decade: 1k to 20k shows only "10k"), so that the
// axis can be read.
func labelFewDecades(ts []plot.Tick, lo, hi float64) {
	labelled := 0
	for _, t := range ts {
		if t.Label != "" && t.Value >= lo && t.Value <= hi {
			labelled++
		}
	}
	if labelled >= 2 {
		return
	}
	for i, t := range ts {
		if t.Label != "" || t.Value <= 0 {
			continue
		}
		m := t.Value / math.Pow(10, math.Floor(math.Log10(t.Value)))
		if math.Abs(m-2) < 1e-9 || math.Abs(m-5) < 1e-9 {
			ts[i].Label = strconv.FormatFloat(t.Value, 'g', -1, 64)
		}
	}
}

func hasErrorBars(pn Panel) bool {
	for _, s := range pn.Series {
		for _, p := range s.Points {
			if p.Lo != p.Y || p.Hi != p.Y {
				return true
			}
		}
	}
	return false
}

// vline is a vertical line across a panel at x; it has no data range, so it
// does not widen the axes.
type vline struct {
	x     float64
	style draw.LineStyle
}

func (v *vline) Plot(c draw.Canvas, p *plot.Plot) {
	if v.x < p.X.Min || v.x > p.X.Max {
		return
	}
	trX, _ := p.Transforms(&c)
	x := trX(v.x)
	c.StrokeLine2(v.style, x, c.Min.Y, x, c.Max.Y)
}

func (v *vline) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(v.style, c.Min.X, y, c.Max.X, y)
}
