"""The national classification of research instruments (the six-digit, three-level category
codes of the national sharing platform): names of its first two levels, so reports and the
duplicate-purchase review can say "质谱仪器" where the registry holds "0102".
"""

from __future__ import annotations

_CLASSES: dict[str, tuple[str, list[str]]] = {
    "01": ("分析仪器", [
        "电子光学仪器", "质谱仪器", "X射线仪器", "光谱仪器", "色谱仪器", "波谱仪器", "电化学仪器",
        "显微镜及图像分析仪器", "热分析仪器", "生化分离分析仪器", "环境与农业分析仪器",
        "样品前处理及制备仪器"]),
    "02": ("物理性能测试仪器", [
        "力学性能测试仪器", "大地测量仪器", "光电测量仪器", "声学振动仪器", "颗粒度测量仪器",
        "探伤仪器"]),
    "03": ("计量仪器", [
        "长度计量仪器", "热学计量仪器", "力学计量仪器", "电磁学计量仪器", "时间频率计量仪器",
        "声学计量仪器", "光学计量仪器", "电离辐射计量仪器", "电子学计量仪器"]),
    "04": ("电子测量仪器", [
        "通用电子测量仪器", "射频和微波测试仪器", "通讯测量仪器", "网络分析仪器",
        "大规模集成电路测试仪器"]),
    "05": ("海洋仪器", [
        "海洋水文测量仪器", "多要素水文气象测量系统", "海洋生物调查仪器", "海水物理量测量仪器",
        "海洋遥感/遥测仪器", "海洋采样设备"]),
    "06": ("地球探测仪器", [
        "电法仪器", "电磁法仪器", "磁法仪器", "重力仪器", "地震仪器", "地球物理测井仪器",
        "岩石矿物测试仪器"]),
    "07": ("大气探测仪器", [
        "气象台站观测仪器", "高空气象探测仪器", "特殊大气探测仪器", "主动大气遥感仪器",
        "被动大气遥感仪器", "高层大气/电离层探测器", "对地观测仪器"]),
    "08": ("天文仪器", ["天体测量仪器", "地面天文望远镜", "空间天文望远镜"]),
    "09": ("医学诊断仪器", ["临床检验分析仪器", "影像诊断仪器", "电子诊察仪器"]),
    "10": ("核仪器", [
        "核辐射探测仪器", "活化分析仪器", "离子束分析仪器", "核效应分析仪器",
        "中子散射及衍射仪器"]),
    "11": ("特种检测仪器", [
        "射线检测仪器", "超声检测仪器", "电磁检测仪器", "声发射检测仪器", "光电检测仪器"]),
    "12": ("工艺实验设备", [
        "汽车工艺实验设备", "化工、制药工艺实验设备", "电子工艺实验设备", "加工工艺实验设备",
        "纺织工艺实验设备", "食品工艺实验设备"]),
    "13": ("计算机及其配套设备", ["计算机", "服务器", "软件", "数据采集及工作站"]),
    "14": ("激光器", ["激光器"]),
    "99": ("其他仪器", []),
}
"""First-level code -> its name and the names of its numbered second-level classes, in
order from 01 (each level's "other" class is left out: its code is not fixed here)."""

CATEGORY_NAMES: dict[str, str] = {
    **{code: name for code, (name, _) in _CLASSES.items()},
    **{f"{code}{n:02d}": sub for code, (_, subs) in _CLASSES.items()
       for n, sub in enumerate(subs, start=1)},
}
"""Two- and four-digit category codes -> names."""


def category_name(code: str | None) -> str | None:
    """The name of the finest class of the classification ``code`` falls in (a six-digit code:
    its second-level class); None when the classification does not know it."""
    if not code:
        return None
    return CATEGORY_NAMES.get(code[:4]) or CATEGORY_NAMES.get(code[:2])
