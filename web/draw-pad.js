// The drawing pad: white ink on black (MNIST's polarity), strokes from pointer events (mouse, pen, touch).
import { inkFromRgba, SIDE } from './preprocess.js';

export class DrawPad {
  /** `onChange(final)` after each stroke segment (final false) and at the end of a stroke (final true). */
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d', { willReadFrequently: true });
    this.onChange = onChange;
    // A stroke about a tenth of the pad wide: after scaling the digit into MNIST's 20x20 box, 2-3 pixels, as MNIST's pen.
    this.lineWidth = Math.round(canvas.width / 13);
    this.last = undefined;
    this.clear();
    canvas.addEventListener('pointerdown', (e) => {
      canvas.setPointerCapture(e.pointerId);
      this.last = this.point(e);
      this.stroke(this.last, this.last);
      this.onChange(false);
    });
    canvas.addEventListener('pointermove', (e) => {
      if (!this.last) return;
      const p = this.point(e);
      this.stroke(this.last, p);
      this.last = p;
      this.onChange(false);
    });
    const end = () => {
      if (!this.last) return;
      this.last = undefined;
      this.onChange(true);
    };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * this.canvas.width) / r.width, ((e.clientY - r.top) * this.canvas.height) / r.height];
  }

  stroke(a, b) {
    const c = this.context;
    c.strokeStyle = '#fff';
    c.lineWidth = this.lineWidth;
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(a[0], a[1]);
    c.lineTo(b[0], b[1]);
    c.stroke();
  }

  clear() {
    this.context.fillStyle = '#000';
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Paints a 28x28 image (ink in [0, 1]) over the whole pad, each pixel a square: a digit from the test set, say. */
  paint(pixels) {
    this.clear();
    const cell = this.canvas.width / SIDE;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const v = Math.round(Math.max(0, Math.min(1, pixels[y * SIDE + x])) * 255);
        if (v === 0) continue;
        this.context.fillStyle = `rgb(${v},${v},${v})`;
        this.context.fillRect(Math.round(x * cell), Math.round(y * cell), Math.round((x + 1) * cell) - Math.round(x * cell), Math.round((y + 1) * cell) - Math.round(y * cell));
      }
    }
  }

  /** Ink intensities of the pad, row-major. */
  ink() {
    const { width, height } = this.canvas;
    return inkFromRgba(this.context.getImageData(0, 0, width, height).data, width, height);
  }
}

/** Shows a 28x28 input on a small canvas (nearest-neighbour upscaling by CSS). */
export function showPreview(canvas, pixels) {
  const c = canvas.getContext('2d');
  const image = c.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = pixels ? Math.round(pixels[i] * 255) : 0;
    image.data.set([v, v, v, 255], i * 4);
  }
  const small = new OffscreenCanvas(SIDE, SIDE);
  small.getContext('2d').putImageData(image, 0, 0);
  c.imageSmoothingEnabled = false;
  c.drawImage(small, 0, 0, canvas.width, canvas.height);
}
