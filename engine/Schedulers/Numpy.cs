namespace Diffusion.Engine.Schedulers;

/// <summary>
/// The few numpy routines diffusers builds timestep and sigma schedules with, reproduced operation by operation in
/// float64 so the schedules round to the same float32 values.
/// </summary>
internal static class Numpy
{
    /// <summary><c>np.linspace(start, stop, num)</c>: <c>i * step + start</c>, the last element exactly <c>stop</c> (one element: <c>start</c>).</summary>
    public static double[] Linspace(double start, double stop, int num)
    {
        if (num == 1) return [start];
        var y = new double[num];
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        if (num > 1) y[^1] = stop;
        return y;
    }

    /// <summary><c>np.arange(start, stop, step)</c> for float steps: numpy fills <c>start + i * ((start + step) - start)</c>.</summary>
    public static double[] Arange(double start, double stop, double step)
    {
        int length = Math.Max(0, (int)Math.Ceiling((stop - start) / step));
        var y = new double[length];
        double delta = (start + step) - start;
        for (int i = 0; i < length; i++) y[i] = i == 1 ? start + step : start + i * delta;
        return y;
    }

    /// <summary><c>np.interp(x, np.arange(len(fp)), fp)</c>: piecewise-linear interpolation on integer abscissae.</summary>
    public static double Interp(double x, float[] fp)
    {
        int last = fp.Length - 1;
        if (x <= 0) return fp[0];
        if (x >= last) return fp[last];
        int j = (int)Math.Floor(x);
        if (j == x) return fp[j];
        double slope = ((double)fp[j + 1] - fp[j]) / ((j + 1) - j);
        return slope * (x - j) + fp[j];
    }

    /// <summary><c>np.round</c>: half to even.</summary>
    public static double Round(double x) => Math.Round(x, MidpointRounding.ToEven);
}
